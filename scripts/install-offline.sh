#!/usr/bin/env bash
# Air-gapped install: builds faiss-node against Debian's FAISS (see build-faiss-node-offline.sh), then
# `npm ci` with prebuild-install pointed at that build. On a machine with internet, `npm ci` alone works.
set -euo pipefail
cd "$(dirname "$0")/.."
prebuilds=$(bash scripts/build-faiss-node-offline.sh)
# onnxruntime-node's install script (CUDA downloads) is denied in package.json allowScripts; the CPU
# runtime ships inside the package. The variable covers npm versions without allowScripts.
ONNXRUNTIME_NODE_INSTALL=skip npm_config_faiss_node_local_prebuilds="$prebuilds" npm ci --no-audit --no-fund
