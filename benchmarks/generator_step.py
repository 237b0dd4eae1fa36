"""Per-token latency of the Generator vs a minimal hand-written ONNX Runtime IO-binding loop vs torch.

The 2-layer LSTM charlm (hidden 256) at batch 1 on CPU. All three step the same weights greedily; they
are timed in interleaved rounds (so machine drift hits all alike), GC paused, perf_counter_ns per step.
A second table times whole greedy calls of `--steps` tokens through each way of generating
(`session.step` in a loop, `generate`, `stream`, `generate_batch` with one prompt), per token, each
call including its session set-up and the prompt's prefill.

    .venv/bin/python -m benchmarks.generator_step [--checkpoint CKPT] [--rounds 10] [--steps 200]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from edgekit.machine import cpu_model


def train_checkpoint(out: Path) -> Path:
    from edgekit.training import TrainOptions, train

    # a short seeded run: latency depends on the shapes (2 x 256 LSTM), not on how well it is trained
    opts = TrainOptions(
        model="charlm", cell="lstm", layers=2, hidden=256, epochs=1, max_chars=40_000
    )
    ckpt, _ = train(opts, out)
    return ckpt.path


class RawLoop:
    """The minimal IO-binding loop a careful engineer would hand-write over the same bundle."""

    def __init__(self, bundle: Path, threads: int) -> None:
        import onnxruntime as ort

        manifest = json.loads((bundle / "edgekit.json").read_text())
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(
            str(bundle / "model.onnx"), so, providers=["CPUExecutionProvider"]
        )
        v = len(manifest["vocab"])
        self.tok = np.zeros((1, 1), np.int64)
        self.logits = np.zeros((1, 1, v), np.float32)
        pairs = [
            (s["input"], s["output"], [d if d != "batch" else 1 for d in s["shape"]])
            for s in manifest["state"]
        ]
        bufs = [{i: np.zeros(shape, np.float32) for i, _, shape in pairs} for _ in range(2)]
        self.bindings = []
        for k in range(2):
            b = self.sess.io_binding()
            b.bind_ortvalue_input("tokens", ort.OrtValue.ortvalue_from_numpy(self.tok))
            b.bind_ortvalue_output("logits", ort.OrtValue.ortvalue_from_numpy(self.logits))
            for i, o, _ in pairs:
                b.bind_ortvalue_input(i, ort.OrtValue.ortvalue_from_numpy(bufs[k][i]))
                b.bind_ortvalue_output(o, ort.OrtValue.ortvalue_from_numpy(bufs[1 - k][i]))
            self.bindings.append(b)
        self.k = 0

    def step(self) -> None:
        self.tok[0, 0] = self.logits[0, 0].argmax()
        self.sess.run_with_iobinding(self.bindings[self.k])
        self.k ^= 1


def timed(fn, n: int) -> list[int]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--checkpoint", type=Path, help="a 2-layer LSTM charlm checkpoint (default: train one)"
    )
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=200, help="steps per backend per round")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()

    import torch

    import edgekit
    from edgekit.exporters import bundle_from_checkpoint
    from edgekit.models.flat import export_module
    from edgekit.training.checkpoint import load_checkpoint

    work = Path(tempfile.mkdtemp(prefix="edgekit-bench-"))
    ckpt_path = args.checkpoint or train_checkpoint(work / "ckpt")
    bundle, _ = bundle_from_checkpoint(ckpt_path, work / "bundle", steps=50)

    gen = edgekit.load(bundle, threads=args.threads)
    session = gen.session()
    session.feed("the ")
    raw = RawLoop(bundle, args.threads)
    ckpt = load_checkpoint(ckpt_path)
    module = export_module(ckpt.build(), ckpt.meta).eval()
    cfg = ckpt.meta["config"]
    assert cfg["cell"] == "lstm" and cfg["layers"] == 2 and cfg["hidden"] == 256, cfg
    state = [torch.zeros(2, 1, 256), torch.zeros(2, 1, 256)]
    tok = torch.zeros(1, 1, dtype=torch.int64)

    def torch_step() -> None:
        nonlocal state
        with torch.inference_mode():
            logits, h, c = module(tok, *state)
        state = [h, c]
        tok[0, 0] = int(logits[0, -1].argmax())

    def gen_step() -> None:
        session.step(temperature=0)

    samples: dict[str, list[int]] = {"generator": [], "raw-iobinding": [], "torch-eager": []}
    steps = {"generator": gen_step, "raw-iobinding": raw.step, "torch-eager": torch_step}
    for fn in steps.values():  # warm-up
        timed(fn, 50)
    gc.disable()
    try:
        for _ in range(args.rounds):
            for name, fn in steps.items():
                samples[name] += timed(fn, args.steps)
    finally:
        gc.enable()

    per_token = _ways_of_generating(gen, args.rounds, args.steps)
    rows = {}
    for name, ns in samples.items():
        us = np.array(ns) / 1e3
        rows[name] = {
            "p50_us": float(np.percentile(us, 50)),
            "p99_us": float(np.percentile(us, 99)),
            "mean_us": float(us.mean()),
            "n": len(us),
        }
    g, r, t = rows["generator"], rows["raw-iobinding"], rows["torch-eager"]
    result = {
        "benchmark": "charlm 2x256 LSTM, batch 1, one-token step, CPU",
        "machine": {"cpu": cpu_model(), "cores": _cores(), "python": platform.python_version()},
        "versions": {
            "onnxruntime": __import__("onnxruntime").__version__,
            "torch": torch.__version__,
        },
        "settings": {
            "ort_threads": args.threads,
            "torch_threads": torch.get_num_threads(),
            "rounds": args.rounds,
            "steps_per_round": args.steps,
        },
        "rows": rows,
        "generator_vs_raw_p50": g["p50_us"] / r["p50_us"],
        "torch_vs_generator_p50": t["p50_us"] / g["p50_us"],
        "per_token_us": per_token,
        "generate_batch_1_vs_session_step": per_token["generate_batch(1)"]
        / per_token["session.step"],
    }
    print(f"{'backend':<16} {'p50 us':>9} {'p99 us':>9} {'mean us':>9}")
    for name, row in rows.items():
        print(f"{name:<16} {row['p50_us']:>9.1f} {row['p99_us']:>9.1f} {row['mean_us']:>9.1f}")
    print(
        f"generator / raw loop (p50): {result['generator_vs_raw_p50']:.3f}   "
        f"torch / generator (p50): {result['torch_vs_generator_p50']:.2f}x"
    )
    print("per token over whole calls (p50 of the rounds):")
    for name, us in per_token.items():
        print(f"  {name:<18} {us:>9.1f} us")
    print(f"generate_batch(1) / session.step: {result['generate_batch_1_vs_session_step']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def _ways_of_generating(gen, rounds: int, steps: int) -> dict[str, float]:
    """Median over rounds of (one greedy call of `steps` tokens) / steps, per way of generating."""

    def session_loop() -> None:
        s = gen.session()
        s.feed("the ")
        for _ in range(steps):
            s.step(0)

    ways = {
        "session.step": session_loop,
        "generate": lambda: gen.generate("the ", steps, temperature=0),
        "stream": lambda: list(gen.stream("the ", steps, temperature=0)),
        "generate_batch(1)": lambda: gen.generate_batch(["the "], steps, temperature=0),
    }
    for fn in ways.values():  # warm-up
        fn()
    calls: dict[str, list[int]] = {name: [] for name in ways}
    gc.disable()
    try:
        for _ in range(max(rounds, 5)):
            for name, fn in ways.items():
                calls[name] += timed(fn, 1)
    finally:
        gc.enable()
    return {name: float(np.median(ns)) / 1e3 / steps for name, ns in calls.items()}


def _cores() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
