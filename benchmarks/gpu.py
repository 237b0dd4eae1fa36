"""The GPU run in one call: GPU tests, then bench of the LSTM and GRU charlm and the CNN on every GPU
backend (ort-cuda with and without CUDA graphs, ort-trt, trt, torch CUDA eager and CUDA graphs).

    python3 -m benchmarks.gpu --out DIR        # on the GPU machine (see README, GPU)

Writes DIR/gpu_results.md (+ one JSON per model) and prints the table last. Backends that cannot
run are listed as skipped with the reason; nothing here reports a figure that was not measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

GPU_BACKENDS = ["torch-cuda", "torch-cuda-graph", "ort-cuda", "ort-cuda-graph", "ort-trt", "trt"]
MODELS = {
    "charlm-lstm": {"model": "charlm", "cell": "lstm", "epochs": 1, "max_chars": 40_000},
    "charlm-gru": {"model": "charlm", "cell": "gru", "epochs": 1, "max_chars": 40_000},
    "cnn": {"model": "cnn", "epochs": 1, "samples": 64},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--skip-tests", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from edgekit.bench.core import run_bench
    from edgekit.bench.report import markdown
    from edgekit.bench.runner import Budget
    from edgekit.exporters import bundle_from_checkpoint
    from edgekit.exporters.tensorrt import build_engine_into_bundle
    from edgekit.training import TrainOptions, train

    if not args.skip_tests:
        tests = subprocess.run(
            [sys.executable, "-m", "pytest", "-m", "gpu or trt", "-q", "-rs"],
            capture_output=True,
            text=True,
        )
        (args.out / "gpu_tests.txt").write_text(tests.stdout + tests.stderr)
        print(
            tests.stdout.strip().splitlines()[-1] if tests.stdout.strip() else tests.stderr[-500:]
        )
    work = Path(tempfile.mkdtemp(prefix="edgekit-gpu-"))
    sections = []
    for name, options in MODELS.items():
        ckpt, _ = train(TrainOptions(seed=0, **options), work / "ckpt" / name)  # trains on the CPU
        bundle, _ = bundle_from_checkpoint(ckpt.path, work / "bundles" / name, steps=50)
        try:
            build_engine_into_bundle(bundle, fp16=False, max_batch=8, max_seq=512)
        except Exception as exc:  # no TensorRT here: the trt rows say so
            print(f"{name}: no TensorRT engine ({type(exc).__name__}: {exc})")
        batches = [1, 8] if name.startswith("charlm") else [1, 8, 32]
        doc = run_bench(
            bundle, ["torch", *GPU_BACKENDS], batches, Budget(warmup=50, iters=args.iters, rounds=5)
        )
        (args.out / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        sections.append(markdown(doc))
    report = "\n".join(sections)
    (args.out / "gpu_results.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
