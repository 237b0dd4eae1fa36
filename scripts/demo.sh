#!/usr/bin/env bash
# The main job on built-in defaults: train every zoo model, export each to a verified ONNX bundle.
set -euo pipefail
runs="${1:-runs}"
ek=".venv/bin/edgekit"
step() { printf '\n== %s\n' "$*"; }

for model in linear logistic lenet rowlstm cnn; do
  step "train $model"
  "$ek" train "$model" --out "$runs/ckpt/$model"
done
step "train charlm (2-layer LSTM, hidden 256)"
"$ek" train charlm --cell lstm --out "$runs/ckpt/charlm-lstm"

for name in linear logistic lenet rowlstm cnn charlm-lstm; do
  step "export $name (parity with PyTorch is checked before anything is written)"
  "$ek" export "$runs/ckpt/$name" --out "$runs/bundles/$name" --force
done
step "verify charlm-lstm against its checkpoint"
"$ek" verify "$runs/bundles/charlm-lstm"
