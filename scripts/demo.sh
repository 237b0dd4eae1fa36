#!/usr/bin/env bash
# The main job on built-in defaults: train every zoo model, export each to a verified ONNX bundle,
# then classify, predict, generate and bench from the bundles. Everything goes under RUNS (default runs):
#   RUNS/ckpt/NAME   checkpoints      RUNS/bundles/NAME   bundles      RUNS/images/   sample images
# DEMO=tiny runs the same steps on tiny models, in seconds instead of minutes (the README's test uses it).
set -euo pipefail
runs="${1:-runs}"
ek=".venv/bin/edgekit"
step() { printf '\n== %s\n' "$*"; }

declare -A size=()  # per model: the training options of the tiny demo
if [ "${DEMO:-full}" = tiny ]; then
  size=([linear]="--epochs 200" [logistic]="--epochs 200" [lenet]="--epochs 1"
    [rowlstm]="--epochs 1" [cnn]="--epochs 1 --image-size 32 --samples 16 --batch-size 8"
    [charlm]="--epochs 1 --layers 1 --hidden 16 --seq-len 16 --max-chars 4000")
fi

for model in linear logistic lenet rowlstm cnn; do
  step "train $model"
  # shellcheck disable=SC2086  # the size options are meant to split into words
  "$ek" train "$model" --out "$runs/ckpt/$model" ${size[$model]:-}
done
if [ "${DEMO:-full}" = tiny ]; then
  step "train charlm (a tiny 1-layer LSTM, hidden 16)"
else
  step "train charlm (2-layer LSTM, hidden 256)"
fi
# shellcheck disable=SC2086
"$ek" train charlm --cell lstm --out "$runs/ckpt/charlm-lstm" ${size[charlm]:-}

for name in linear logistic lenet rowlstm cnn charlm-lstm; do
  step "export $name (parity with PyTorch is checked before anything is written)"
  "$ek" export "$runs/ckpt/$name" --out "$runs/bundles/$name" --force
done
step "verify charlm-lstm against its checkpoint"
"$ek" verify "$runs/bundles/charlm-lstm"

step "classify two generated images with the CNN bundle (torch-free runtime)"
.venv/bin/python - "$runs" <<'PY'
import sys
from pathlib import Path
from edgekit.data.images import synthetic_shapes
out = Path(sys.argv[1]) / "images"
out.mkdir(parents=True, exist_ok=True)
for i, im in enumerate(synthetic_shapes(2, 160, seed=99).images):
    im.save(out / f"sample-{i}.png")
PY
"$ek" classify "$runs/bundles/cnn" "$runs/images/sample-0.png" "$runs/images/sample-1.png" --top-k 2
step "predict sales for two (temperature, price) rows"
"$ek" predict "$runs/bundles/linear" 25,3 33,2.5
step "generate 200 characters from the LSTM language model"
"$ek" generate "$runs/bundles/charlm-lstm" --prompt "The " --max-new-tokens 200 --temperature 0.7 --seed 0

step "bench: every available backend side by side with PyTorch (short run)"
"$ek" bench "$runs/bundles/cnn" --batch 1,8 --iters 50 --rounds 3 --no-cold-start
"$ek" bench "$runs/bundles/charlm-lstm" --batch 1 --iters 100 --rounds 3 --no-cold-start
