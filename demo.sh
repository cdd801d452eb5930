#!/usr/bin/env bash
# The main job on a fresh machine: install kprune, make Fashion-MNIST
# available (Keras downloads it; offline, Debian's dataset-fashion-mnist
# package provides it), then prune LeNet-5 -> convert to TFLite / a C array
# -> benchmark the pruned model against the original.
set -euo pipefail
cd "$(dirname "$0")"
export TF_CPP_MIN_LOG_LEVEL=3 PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m pip install -q -e ".[all]"
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1 \
   && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "note: dataset-fashion-mnist unavailable; Keras will download Fashion-MNIST"
fi
python3 -m kprune.demo --out "${1:-kprune_demo}"
