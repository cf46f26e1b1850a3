#!/usr/bin/env bash
# Air-gapped install of faiss-node@0.5.1.
#
# faiss-node's own install step downloads a prebuilt binary from GitHub, else clones FAISS from GitHub;
# both fail on a machine that reaches only the npm registry and Debian's archive. This script builds the
# addon against Debian 12's FAISS 1.7.3 (static libfaiss.a, with BLAS/LAPACK/OpenMP) and packs it the way
# prebuild-install expects, so `npm ci` with npm_config_faiss_node_local_prebuilds=<dir> uses it.
#
# Usage: scripts/build-faiss-node-offline.sh [OUT_DIR]   (default: .faiss-prebuilds)
# Prints the OUT_DIR on its last line. Idempotent: an existing tarball built from the same sources is reused.
set -euo pipefail

VERSION=0.5.1
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/.faiss-prebuilds}
mkdir -p "$out"
out=$(cd "$out" && pwd)
tarball="$out/faiss-node-v$VERSION-napi-v8-linux-x64.tar.gz"
# The tarball is rebuilt when this script or the extension sources change.
stamp_file="$out/.source-sha256"
stamp=$(cat "$0" "$root"/scripts/faiss-node-ext/* | sha256sum | cut -d' ' -f1)

if [ -s "$tarball" ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ]; then
  echo "faiss-node prebuild already present: $tarball" >&2
  echo "$out"
  exit 0
fi
rm -f "$tarball"

need_apt=()
[ -f /usr/lib/x86_64-linux-gnu/libfaiss.a ] || need_apt+=(libfaiss-dev)
# OpenBLAS rather than the reference BLAS: FAISS batches use sgemm.
[ -e /usr/lib/x86_64-linux-gnu/libopenblas.so.0 ] || need_apt+=(libopenblas0-pthread)
command -v cmake >/dev/null || need_apt+=(cmake)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} from Debian's archive" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${need_apt[@]}" >&2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack "faiss-node@$VERSION" --silent >/dev/null
tar xzf "faiss-node-$VERSION.tgz"
cd package

# Replace the bundled-FAISS build (add_subdirectory + target properties) and the Linux block that copies
# BLAS libraries next to the addon with a link against the system's static FAISS.
python3 - <<'PY'
import re
p = "CMakeLists.txt"
s = open(p).read()
s = re.sub(r'add_subdirectory\("deps/faiss"\)\nset_target_properties\(faiss PROPERTIES.*?\n\)\n', '', s, flags=re.S)
s = s.replace('target_link_libraries(${PROJECT_NAME} ${CMAKE_JS_LIB} faiss)',
  'find_package(OpenMP REQUIRED)\nfind_package(BLAS REQUIRED)\nfind_package(LAPACK REQUIRED)\n'
  'target_link_libraries(${PROJECT_NAME} ${CMAKE_JS_LIB} /usr/lib/x86_64-linux-gnu/libfaiss.a '
  'OpenMP::OpenMP_CXX ${LAPACK_LIBRARIES} ${BLAS_LIBRARIES})')
start = s.index('# https://gitlab.kitware.com/cmake/community/-/wikis/doc/tutorials/How-To-Write-Platform-Checks')
end = s.index('if(APPLE)\n    # Copy libomp.dylib')
s = s[:start] + s[end:]
open(p, "w").write(s)
PY
# defect-lens's additions: typed-array add/search, HNSW/IVF parameters, subset search, reconstruct,
# OpenMP thread count, and a per-thread constructor so worker threads can each load the addon.
python3 "$root/scripts/faiss-node-ext/patch.py" src/faiss.cc

npm install --silent --no-audit --no-fund --ignore-scripts cmake-js@7 node-addon-api@6 >/dev/null
npx --no-install cmake-js compile --log-level warn >&2
strip --strip-unneeded build/Release/faiss-node.node || true
tar czf "$tarball" build/Release/faiss-node.node
echo "$stamp" >"$stamp_file"
echo "built $tarball" >&2
echo "$out"
