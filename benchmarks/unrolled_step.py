"""Would an unrolled one-token step graph make int8 pay for recurrent cells ORT cannot quantize?

    .venv/bin/python -m benchmarks.unrolled_step [--ckpt runs/ckpt]

ONNX Runtime has no int8 kernel for the RNN and GRU ops, so `edgekit quantize` leaves those cells in
float (and says the variant does not pay). The alternative is a step graph for T = 1 whose cell is
plain MatMuls, which dynamic int8 does quantize. This script measures it on the zoo's 2 x 256 RNN
charlm: the hand-written RNN cell (`--cell scratch-rnn`) traced at T = 1 unrolls into MatMul + Tanh;
it is timed in fp32 and int8 against the nn.RNN bundle's fp32 step, one ORT thread, interleaved in
one process, feeding the same inputs (the two models are trained separately: only speed compares).
Checkpoints come from --ckpt (charlm-rnn, charlm-scratch-rnn) or are trained with the defaults.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, default=None)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from benchmarks.quantize import checkpoint
    from edgekit.exporters import bundle_from_checkpoint
    from edgekit.exporters.plan import plan_from_checkpoint
    from edgekit.exporters.quantize import recipes

    work = Path(tempfile.mkdtemp(prefix="edgekit-unrolled-"))
    rnn = checkpoint("charlm-rnn", {"model": "charlm", "cell": "rnn"}, args.ckpt, work)
    op_bundle, _ = bundle_from_checkpoint(rnn, work / "rnn", steps=20)
    scratch = {"model": "charlm", "cell": "scratch-rnn"}
    plan = plan_from_checkpoint(checkpoint("charlm-scratch-rnn", scratch, args.ckpt, work))
    contract = plan.contract
    names = [t.name for t in contract.inputs]
    feeds = contract.feeds({"batch": 1, "time": 1}, np.random.default_rng(0))
    step = work / "step.onnx"
    torch.onnx.export(  # traced at T = 1: the cell's Python loop runs once, no Loop op
        plan.module.eval(),
        tuple(torch.from_numpy(feeds[n]) for n in names),
        str(step),
        input_names=names,
        output_names=[t.name for t in contract.outputs],
        dynamo=False,
        opset_version=17,
    )
    source, _ = recipes.prepare(step, work / "step.prepared.onnx")
    recipes.build(recipes.Recipe("int8", "dynamic"), source, work / "step.int8.onnx")
    graphs = {
        "nn.RNN op, fp32 (the bundle)": op_bundle / "model.onnx",
        "unrolled MatMul step, fp32": step,
        "unrolled MatMul step, int8": work / "step.int8.onnx",
    }
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = {
        k: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
        for k, p in graphs.items()
    }
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for s in sessions.values():
        for _ in range(50):
            s.run(None, feeds)
    end = time.perf_counter() + args.seconds
    while time.perf_counter() < end:
        for k, s in sessions.items():
            for _ in range(50):
                start = time.perf_counter()
                s.run(None, feeds)
                times[k].append(time.perf_counter() - start)
    base = float(np.median(times["nn.RNN op, fp32 (the bundle)"]))
    print("one-token step, batch 1, 1 ORT thread (session.run, medians from one run)")
    for k, t in times.items():
        median = float(np.median(t))
        print(f"  {k:<30} {median * 1e6:7.1f} us  {median / base:.2f}x")


if __name__ == "__main__":
    main()
