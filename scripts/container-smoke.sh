#!/usr/bin/env bash
# Opt-in container smoke test (minutes; not part of npm test): builds the image from the Dockerfile with
# podman, runs two replicas of it against one PostgreSQL database and one S3-protocol server, the way
# compose.yaml and deploy/k8s run them, and checks what a deployment relies on:
#   - the image builds from a plain Debian base with only the npm registry and Debian's archive reachable;
#   - the service runs as its non-root user on a read-only root file system (writable: /tmp and
#     INDEX_CACHE_DIR only, as in deploy/k8s), with all capabilities dropped;
#   - replica 1 imports the sample gallery (--with-sample-gallery), /readyz turns 200, /healthz and /metrics
#     answer, the image's HEALTHCHECK passes;
#   - replica 2, started next with its own empty index cache (or with --concurrent at the same time as
#     replica 1), serves the same gallery from the shared database and bucket;
#   - a held-back sample image finds its own defect type at rank 1 on both (multipart upload on one,
#     base64 on the other), and the top hit's presigned downloadUrl returns the image from the bucket;
#   - SIGTERM stops both replicas cleanly (exit code 0).
# Then it removes the containers and the database; the image is kept for the next run.
#
# Usage: scripts/container-smoke.sh [--no-build | --no-cache] [--concurrent]
#   --no-build    use the image built before
#   --no-cache    build every layer anew (the build time of a first build)
#   --concurrent  start both replicas at once on the empty database, as a Deployment starts its pods, and
#                 wait until both serve the whole sample gallery (replica 1 imports it while replica 2
#                 is already up: needs the serving state shared through PostgreSQL and the bucket)
# Environment: BASE_IMAGE (default localhost/debian:bookworm-min, made with debootstrap when missing),
#   IMAGE (default localhost/defect-lens:smoke), BUILD_CA_BUNDLE (default the host's
#   /etc/ssl/certs/ca-certificates.crt: the CA bundle the build's downloads trust), PGHOST/PGPORT/PGUSER (default 127.0.0.1/5432/postgres: the
#   machine's PostgreSQL, trust authentication; a fresh database smoke_<random> is created and dropped).
# Needs root (podman with runc, host network), podman/runc/debootstrap are installed with apt when missing.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
BASE_IMAGE=${BASE_IMAGE:-localhost/debian:bookworm-min}
IMAGE=${IMAGE:-localhost/defect-lens:smoke}
BUILD_CA_BUNDLE=${BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
build=1
concurrent=0
no_cache=()
for arg in "$@"; do
  case $arg in
    --no-build) build=0 ;;
    --concurrent) concurrent=1 ;;
    --no-cache) no_cache=(--no-cache) ;;
    *) echo "usage: $0 [--no-build | --no-cache] [--concurrent]" >&2; exit 2 ;;
  esac
done

log() { printf '[smoke %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
podman() { command podman --runtime runc "$@"; }
# Without systemd podman cannot schedule HEALTHCHECK runs and says so at every start; the check is run
# by hand below (podman healthcheck run).
quiet() { grep -v 'unable to get systemd connection' || true; }

# --- podman and the base image (idempotent) ------------------------------------------------------------
setup_podman() {
  if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
    log "installing podman, runc and debootstrap from Debian's archive"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
  fi
  # cgroupfs: no systemd here; no default ulimits: the container may not raise them above the host's.
  if [ ! -f /etc/containers/containers.conf ]; then
    log "writing /etc/containers/containers.conf"
    mkdir -p /etc/containers
    printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\n' >/etc/containers/containers.conf
  elif ! grep -q 'cgroup_manager *= *"cgroupfs"' /etc/containers/containers.conf; then
    log "note: /etc/containers/containers.conf exists without cgroup_manager = \"cgroupfs\"; left as it is"
  fi
}

setup_base_image() {
  if podman image exists "$BASE_IMAGE"; then return; fi
  [ "$BASE_IMAGE" = localhost/debian:bookworm-min ] ||
    die "base image $BASE_IMAGE is missing (only localhost/debian:bookworm-min is made here)"
  local mirror dir
  mirror=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
  [ -n "$mirror" ] || mirror=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  dir=$(mktemp -d /var/tmp/debian-bookworm-min.XXXXXX)
  log "debootstrap --variant=minbase bookworm from $mirror"
  nice -n 19 debootstrap --variant=minbase bookworm "$dir" "$mirror" >/dev/null
  # Like Debian's own images: no downloaded packages or package lists (every build runs apt-get update).
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin "$dir"/var/lib/apt/lists/*
  tar -C "$dir" -c . | podman import -q - "$BASE_IMAGE" >/dev/null
  rm -rf "$dir"
  log "imported $BASE_IMAGE"
}

setup_podman
setup_base_image

# --- build -------------------------------------------------------------------------------------------------
build_seconds="not built (--no-build)"
if [ $build = 1 ]; then
  log "building $IMAGE from $root (base $BASE_IMAGE); the first build compiles faiss-node: several minutes"
  started=$(date +%s)
  # docker format: OCI images drop HEALTHCHECK. The host's CA bundle goes in as the build secret extra-ca,
  # so the build's downloads trust what the host trusts (a TLS-inspecting proxy included).
  secret=()
  [ ! -f "$BUILD_CA_BUNDLE" ] || secret=(--secret "id=extra-ca,src=$BUILD_CA_BUNDLE")
  nice -n 19 podman build --format docker --network=host --build-arg BASE_IMAGE="$BASE_IMAGE" "${secret[@]}" "${no_cache[@]}" \
    -t "$IMAGE" "$root" >"${TMPDIR:-/tmp}/container-smoke-build.log" 2>&1 ||
    { tail -50 "${TMPDIR:-/tmp}/container-smoke-build.log" >&2; die "podman build (log: ${TMPDIR:-/tmp}/container-smoke-build.log)"; }
  build_seconds="$(($(date +%s) - started)) s"
fi
podman image exists "$IMAGE" || die "no image $IMAGE (run without --no-build)"
image_mb=$(($(podman image inspect --format '{{.Size}}' "$IMAGE") / 1000000))
image_user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
log "image $IMAGE: ${image_mb} MB, user $image_user, build $build_seconds"

# --- PostgreSQL database, S3 server, two replicas ------------------------------------------------------
run_id=$(date +%s)$RANDOM
db=smoke_$run_id
prefix=defect-lens-smoke-$run_id
containers=()
cleanup() {
  local rc=$?
  if [ $rc -ne 0 ]; then
    for c in "${containers[@]}"; do
      log "$c: $(podman inspect --format '{{.State.Status}}, exit code {{.State.ExitCode}}, OOM killed {{.State.OOMKilled}}' "$c" 2>&1); last lines:"
      podman logs --tail 40 "$c" >&2 2>&1 || true
    done
  fi
  for c in "${containers[@]}"; do podman rm -f -t 5 "$c" >/dev/null 2>&1 || true; done
  psql -qX -d postgres -c "drop database if exists $db" >/dev/null 2>&1 || true
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 20000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  die "no free port"
}

pg_isready -q || die "no PostgreSQL at $PGHOST:$PGPORT"
psql -qX -d postgres -c "create database $db" >/dev/null
database_url="postgres://$PGUSER@$PGHOST:$PGPORT/$db"
log "database $db"

# s3rver (the service's own dependency, already in the image) stands in for MinIO, which needs its image.
s3_port=$(free_port)
containers+=("$prefix-s3")
podman run -d --name "$prefix-s3" --network=host --read-only --tmpfs /tmp:rw,mode=1777 \
  --entrypoint node "$IMAGE" --input-type=module -e "
    import S3rver from 's3rver';
    process.on('SIGTERM', () => process.exit(0));
    await new S3rver({ port: $s3_port, address: '127.0.0.1', directory: '/tmp/s3', silent: true }).run();
    console.log('s3rver on $s3_port');" 2> >(quiet >&2) >/dev/null
for _ in $(seq 1 30); do curl -s -o /dev/null "http://127.0.0.1:$s3_port" && break; sleep 1; done
curl -s -o /dev/null "http://127.0.0.1:$s3_port" || die "s3rver did not start"
log "S3 server (s3rver) on 127.0.0.1:$s3_port"

admin_token=smoke-admin-token-$run_id
# Replica $1 on port $2; further arguments go to the service (dist/main.js ...).
start_replica() {
  local n=$1 port=$2
  shift 2
  containers+=("$prefix-app$n")
  # chown=true: podman's tmpfs mode option does not make the mount point writable for the user here.
  nice -n 19 podman run -d --name "$prefix-app$n" --network=host \
    --read-only --tmpfs /tmp:rw,mode=1777 \
    --mount type=tmpfs,destination=/var/cache/defect-lens,chown=true \
    --cap-drop=ALL --security-opt=no-new-privileges \
    -e DATABASE_URL="$database_url" \
    -e S3_ENDPOINT="http://127.0.0.1:$s3_port" -e S3_ACCESS_KEY=S3RVER -e S3_SECRET_KEY=S3RVER \
    -e S3_BUCKET=defect-lens-smoke -e PORT="$port" -e ADMIN_TOKEN="$admin_token" \
    -e REPLICA_ID="smoke-$n" -e STATE_POLL_MS=2000 -e LOG_LEVEL=info \
    "$IMAGE" dist/main.js "$@" 2> >(quiet >&2) >/dev/null
}
# Waits for /readyz 200 on port $2 (replica $1); prints the seconds it took.
wait_ready() {
  local n=$1 port=$2 started=$3 deadline=$(($(date +%s) + 600))
  while [ "$(date +%s)" -lt $deadline ]; do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ]; then
      echo $(($(date +%s) - started))
      return
    fi
    [ "$(podman inspect --format '{{.State.Running}}' "$prefix-app$n")" = true ] || die "replica $n exited"
    sleep 1
  done
  die "replica $n not ready after 600 s"
}

# The status query: where each replica's indexes come from (BUILT here, LOADED from its cache, DOWNLOADED
# from the bucket) and how many images they hold. Read with the image's own node (no JSON tool needed).
status_q='{"query":"{status{activeVersion indexes{version imageType ready count source}}}"}'
index_status() {
  local answer
  answer=$(curl -s "http://127.0.0.1:$1/graphql" -H 'content-type: application/json' --data "$status_q")
  podman exec -e ANSWER="$answer" -e FIELD="${2:-summary}" "$prefix-app1" node -e '
    const s = JSON.parse(process.env.ANSWER).data?.status;
    if (!s) { console.log(process.env.FIELD === "count" ? -1 : "status unavailable: " + process.env.ANSWER); process.exit(0); }
    if (process.env.FIELD === "count")
      console.log(s.indexes.find((i) => i.version === "V2" && i.imageType === "DEFECT" && i.ready)?.count ?? -1);
    else console.log(s.indexes.map((i) => `${i.version}/${i.imageType} ${i.count} ${i.source}${i.ready ? "" : " (not ready)"}`).join(", "));'
}
# Waits until replica $1 (port $2) serves the whole sample gallery; prints the seconds since $3.
wait_gallery() {
  local deadline=$(($(date +%s) + 300))
  while [ "$(date +%s)" -lt $deadline ]; do
    if [ "$(index_status "$2" count)" = "$gallery_images" ]; then echo $(($(date +%s) - $3)); return; fi
    sleep 2
  done
  die "replica $1 does not serve the $gallery_images-image gallery after 300 s: $(index_status "$2")"
}
gallery_images=$(find "$root/samples/xsdd/gallery" -type f \( -name '*.jpg' -o -name '*.png' \) | wc -l)

port1=$(free_port)
port2=$(free_port)
if [ $concurrent = 1 ]; then
  log "replicas 1 (:$port1, --with-sample-gallery) and 2 (:$port2) started together on the empty database"
  t1=$(date +%s)
  start_replica 1 "$port1" --with-sample-gallery
  start_replica 2 "$port2"
  ready1=$(wait_ready 1 "$port1" "$t1")
  ready2=$(wait_ready 2 "$port2" "$t1")
  log "ready after ${ready1} s and ${ready2} s; waiting for both to serve the $gallery_images-image gallery"
  full1=$(wait_gallery 1 "$port1" "$t1")
  full2=$(wait_gallery 2 "$port2" "$t1")
  how1="started with replica 2, --with-sample-gallery: /readyz 200 after ${ready1} s, whole gallery after ${full1} s"
  how2="started with replica 1, no import: /readyz 200 after ${ready2} s, whole gallery after ${full2} s"
else
  log "replica 1 on :$port1 with --with-sample-gallery (imports $gallery_images images, embeds, indexes)"
  t1=$(date +%s)
  start_replica 1 "$port1" --with-sample-gallery
  ready1=$(wait_ready 1 "$port1" "$t1")
  log "replica 1 ready in ${ready1} s"
  log "replica 2 on :$port2, same database and bucket, its own empty index cache"
  t2=$(date +%s)
  start_replica 2 "$port2"
  ready2=$(wait_ready 2 "$port2" "$t2")
  log "replica 2 ready in ${ready2} s"
  [ "$(index_status "$port2" count)" = "$gallery_images" ] || die "replica 2 does not serve the gallery: $(index_status "$port2")"
  how1="--with-sample-gallery: /readyz 200 after ${ready1} s"
  how2="started once replica 1 was ready, no import, own empty cache: /readyz 200 after ${ready2} s"
fi

# --- checks ----------------------------------------------------------------------------------------------
[ "$(podman exec "$prefix-app1" id -u)" = 10001 ] || die "the service does not run as uid 10001"
podman exec "$prefix-app1" touch /var/lib/defect-lens/x 2>/dev/null && die "the root file system is writable"
for path in healthz metrics; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port1/$path")" = 200 ] || die "/$path not 200"
done
podman healthcheck run "$prefix-app1" >/dev/null || die "the image's HEALTHCHECK failed"

image=samples/xsdd/held-back/steel_strip_xsdd/finishing_roll_printing/6144.jpg
expected=finishing_roll_printing
# shellcheck disable=SC2016  # $f and $b are GraphQL variables
query='query($f:Upload!){searchSimilar(input:{image:{file:$f},topK:5}){version indexSize tookMs hits{rank score productCode defectCode downloadUrl}}}'
answer1=$(curl -s "http://127.0.0.1:$port1/graphql" -H 'Apollo-Require-Preflight: true' \
  -F operations="{\"query\":\"$query\",\"variables\":{\"f\":null}}" \
  -F map='{"0":["variables.f"]}' -F 0=@"$root/$image")
# shellcheck disable=SC2016
query64='query($b:String!){searchSimilar(input:{image:{base64:$b},topK:5}){version indexSize tookMs hits{rank score productCode defectCode downloadUrl}}}'
body=$(mktemp)
printf '{"query":"%s","variables":{"b":"%s"}}' "$query64" "$(base64 -w0 "$root/$image")" >"$body"
answer2=$(curl -s "http://127.0.0.1:$port2/graphql" -H 'content-type: application/json' --data-binary @"$body")
rm -f "$body"

# Checked with the image's own node, so the host needs no JSON tool.
check_answer() {
  podman exec -e ANSWER="$2" -e EXPECTED="$expected" -e WHO="$1" "$prefix-app1" node -e '
    const r = JSON.parse(process.env.ANSWER);
    const s = r.data?.searchSimilar;
    const hits = s?.hits ?? [];
    if (hits.length === 0 || hits[0].defectCode !== process.env.EXPECTED) {
      console.error(`${process.env.WHO}: expected hits with ${process.env.EXPECTED} at rank 1, got ${JSON.stringify(r)}`);
      process.exit(1);
    }
    console.log(`${process.env.WHO}: ${s.version}, index of ${s.indexSize}, ${s.tookMs.toFixed(0)} ms, ${hits.length} hits:`);
    for (const h of hits) console.log(`  #${h.rank} ${h.score.toFixed(3)} ${h.productCode}/${h.defectCode}`);
    console.log(`DOWNLOAD ${hits[0].downloadUrl}`);'
}
out1=$(check_answer "replica 1, multipart" "$answer1") || die "search on replica 1"
out2=$(check_answer "replica 2, base64" "$answer2") || die "search on replica 2"
sources1=$(index_status "$port1")
sources2=$(index_status "$port2")
download=$(printf '%s\n' "$out1" | sed -n 's/^DOWNLOAD //p')
bytes=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "$download")
[ "${bytes%% *}" = 200 ] || die "downloadUrl of the top hit answered $bytes"

mem1=$(podman stats --no-stream --format '{{.MemUsage}}' "$prefix-app1" 2>/dev/null | cut -d/ -f1 | tr -d ' ' || echo '?')
mem2=$(podman stats --no-stream --format '{{.MemUsage}}' "$prefix-app2" 2>/dev/null | cut -d/ -f1 | tr -d ' ' || echo '?')

# SIGTERM (podman stop) must end each replica through its shutdown hook: exit code 0. 143 (killed by
# SIGTERM) means a library's own signal handler ended the process before the service's shutdown finished
# (Apollo's stopOnTerminationSignals re-raises the signal; async-exit-hook, which embedded-postgres
# registers when imported, exits with 128 + signal): reported, not failed, until the service stops it.
shutdown_note=""
podman stop -t 30 "$prefix-app2" "$prefix-app1" 2> >(quiet >&2) >/dev/null
for n in 1 2; do
  code=$(podman inspect --format '{{.State.ExitCode}}' "$prefix-app$n")
  podman logs "$prefix-app$n" 2>&1 | grep -q '"msg":"shutting down"' || die "replica $n did not run its shutdown hook"
  case $code in
    0) ;;
    143) shutdown_note="$shutdown_note replica $n: exit 143 (killed by a re-raised SIGTERM before app.close() ended);" ;;
    *) die "replica $n exited with $code after SIGTERM" ;;
  esac
done

cat <<EOF

container smoke test: OK
  image            $IMAGE from base $BASE_IMAGE: build $build_seconds, ${image_mb} MB, user $image_user
  run as           uid 10001, read-only root fs (tmpfs /tmp and INDEX_CACHE_DIR), --cap-drop=ALL
  database         $database_url (fresh), S3 s3rver http://127.0.0.1:$s3_port bucket defect-lens-smoke
  replica 1        $how1; /healthz, /metrics, HEALTHCHECK ok
  replica 2        $how2
  indexes          replica 1: $sources1
                   replica 2: $sources2
  query image      $image (held back from the gallery)
$(printf '%s\n' "$out1" "$out2" | grep -v '^DOWNLOAD ' | sed 's/^/  /')
  downloadUrl      top hit's presigned URL: HTTP ${bytes%% *}, ${bytes##* } bytes
  memory           after the searches: replica 1 $mem1, replica 2 $mem2
  shutdown         SIGTERM: shutdown hook ran on both; ${shutdown_note:-both exited 0}
EOF
[ -z "$shutdown_note" ] || log "WARNING: graceful shutdown cut short:$shutdown_note"
