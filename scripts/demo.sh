#!/usr/bin/env bash
# The main job on built-in defaults: train every zoo model and print its held-out metric.
set -euo pipefail
runs="${1:-runs}"
ek=".venv/bin/edgekit"
for model in linear logistic lenet rowlstm cnn; do
  "$ek" train "$model" --out "$runs/$model"
done
"$ek" train charlm --cell lstm --out "$runs/charlm-lstm"
echo
echo "checkpoints are in $runs/ (inspect one with: $ek info $runs/charlm-lstm)"
