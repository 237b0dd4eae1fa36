"""The GPU run: GPU tests, then bench of the LSTM and GRU charlm and the CNN on every GPU backend
(ort-cuda with and without CUDA graphs, ort-trt, trt, torch CUDA eager and CUDA graphs), with each
bundle's fp16 and int8 variants and its step graph where they exist.

    python3 -m benchmarks.gpu --out DIR [--work DIR]     # on the GPU machine (see README, GPU)

Charlm steps at 1, 8 and 64 streams (prefill at T = 16, 128, 512); the CNN at batch 1, 8 and 32.
Writes DIR/gpu_results.md (+ one JSON per model) and prints a short table of the GPU targets last.
Backends that cannot run are listed as skipped with the reason; nothing here reports a figure that
was not measured. `--work` keeps trained bundles between calls (a device call has a time limit):
a bundle already there is reused, and `--models` runs a subset.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

GPU_BACKENDS = ["torch-cuda", "torch-cuda-graph", "ort-cuda", "ort-cuda-graph", "ort-trt", "trt"]
TARGETS_US = {"charlm-lstm": ("step bound B=1", 25.0), "cnn": ("batch 1", 150.0)}
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
    ap.add_argument("--work", type=Path, default=None, help="bundles kept between calls")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from edgekit.bench.core import run_bench
    from edgekit.bench.report import markdown
    from edgekit.bench.runner import Budget

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
    work = args.work or Path(tempfile.mkdtemp(prefix="edgekit-gpu-"))
    sections, docs = [], {}
    for name in args.models.split(","):
        bundle = prepare(name, MODELS[name], work)
        batches = [1, 8, 64] if name.startswith("charlm") else [1, 8, 32]
        doc = run_bench(
            bundle, ["torch", *GPU_BACKENDS], batches, Budget(warmup=50, iters=args.iters, rounds=5)
        )
        (args.out / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        sections.append(markdown(doc))
        docs[name] = doc
    report = "\n".join(sections)
    (args.out / "gpu_results.md").write_text(report)
    print(report)
    print(targets(docs))


def prepare(name: str, options: dict[str, Any], work: Path) -> Path:
    """Train (on the CPU), export, build a TensorRT engine where TensorRT is installed, and add the
    fp16 and int8 variants that pass their gates; a bundle already in `work` is reused."""
    from edgekit.errors import CheckFailed
    from edgekit.exporters import bundle_from_checkpoint
    from edgekit.exporters.quantize import DoesNotPay, quantize_bundle
    from edgekit.exporters.tensorrt import build_engine_into_bundle
    from edgekit.training import TrainOptions, train

    bundle = work / "bundles" / name
    if (bundle / "edgekit.json").exists():
        return bundle
    ckpt, _ = train(TrainOptions(seed=0, **options), work / "ckpt" / name)
    bundle, _ = bundle_from_checkpoint(ckpt.path, bundle, steps=50)
    try:
        build_engine_into_bundle(bundle, fp16=False, max_batch=64, max_seq=512)
    except Exception as exc:  # no TensorRT here: the trt rows say so
        print(f"{name}: no TensorRT engine ({type(exc).__name__}: {exc})")
    for precision in ("fp16", "int8"):
        try:
            quantize_bundle(bundle, precision)
        except (DoesNotPay, CheckFailed) as exc:  # the bench shows fp32 only for it
            print(f"{name}: no {precision} variant ({exc})".splitlines()[0])
    return bundle


def targets(docs: dict[str, Any]) -> str:
    """The GPU targets: batch-1 p50 under a bound, and >= 10x torch eager on the same GPU."""
    lines = ["| model | case | best GPU row | p50 us | target us | vs torch-cuda | met |"]
    lines.append("|---|---|---|---|---|---|---|")
    for name, (case, bound) in TARGETS_US.items():
        doc = docs.get(name)
        rows = [
            r
            for r in (doc or {}).get("results", [])
            if r["case"] == case and r["backend"] in GPU_BACKENDS[2:]
        ]
        if not rows:
            lines.append(f"| {name} | {case} | none ran | - | {bound:g} | - | - |")
            continue
        best = min(rows, key=lambda r: r["p50_us"])
        speed = best.get("speedup_vs_torch") or 0.0
        met = best["p50_us"] <= bound and speed >= 10
        lines.append(
            f"| {name} | {case} | {best['backend']} {best['precision']} | {best['p50_us']:.1f} | "
            f"{bound:g} | {speed:.1f}x | {'yes' if met else 'no'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
