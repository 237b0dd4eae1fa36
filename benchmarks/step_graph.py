"""One-token step: the step graph against the sequence graph and torch eager, per recurrent cell.

    .venv/bin/python -m benchmarks.step_graph [--ckpt runs/ckpt] [--seconds 6]

For each charlm cell at the zoo's default size (2 x 256), the bundle is exported (which builds, checks
and times the step graph and records whether it is used), then greedy one-token steps at batch 1
are timed interleaved in one process, one thread each: ONNX Runtime on the sequence graph (bound
stepper), ONNX Runtime on the step graph (bound stepper), torch eager and, where openvino is
installed, edgekit's OpenVINO backend and OpenVINO used by hand (stateful, static shapes; see
benchmarks/openvino_peers.py), and where executorch is installed, ExecuTorch with XNNPACK on the
same fused step (benchmarks/executorch_peer.py). Checkpoints come from
--ckpt (charlm-lstm, charlm-gru, ...) or are trained briefly (latency depends on shapes, not on how
well a model is trained). Writes the "step-graph" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from benchmarks.quantize import checkpoint
from benchmarks.sections import replace_section
from benchmarks.why import ort_profile, split
from edgekit.bench.core import floor_graph
from edgekit.bench.floors import floor_cases
from edgekit.bench.runner import interleaved_medians

ROOT = Path(__file__).resolve().parent.parent
CELLS = ("lstm", "gru", "rnn", "scratch-lstm", "scratch-rnn")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, default=None)
    ap.add_argument("--seconds", type=float, default=6.0)
    args = ap.parse_args()

    import torch

    from edgekit.exporters import bundle_from_checkpoint
    from edgekit.exporters.plan import plan_from_checkpoint
    from edgekit.iospec import IOContract
    from edgekit.reference.torch_backend import TorchBackend
    from edgekit.runtimes.onnxruntime import OrtBackend, step_graph_of

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="edgekit-step-graph-"))
    rows = []
    for cell in CELLS:
        print(f"== {cell}", flush=True)
        options = {"model": "charlm", "cell": cell, "epochs": 1, "max_chars": 40_000}
        ckpt = checkpoint(f"charlm-{cell}", options, args.ckpt, work)
        bundle, manifest = bundle_from_checkpoint(ckpt, work / cell, steps=50)
        contract = IOContract.from_manifest(manifest)
        record = manifest["step_graph"]
        calls = {
            "sequence": OrtBackend(bundle / "model.onnx", contract, threads=1).greedy_step(1),
            "torch": TorchBackend(plan_from_checkpoint(ckpt).module, contract).greedy_step(1),
        }
        step = step_graph_of(bundle, manifest, used_only=False)  # timed even where not used
        if step is not None:
            backend = OrtBackend(bundle / "model.onnx", contract, threads=1, step_graph=step)
            calls["step graph"] = backend.greedy_step(1)
        notes = add_openvino(calls, bundle, contract, step) | add_executorch(calls, ckpt)
        # the floor: numpy GEMVs over every multiplied weight of the step, on one thread like the rest
        calls["floor"] = floor_cases(floor_graph(bundle, manifest), [1])[0].call
        with threadpool_limits(1):
            us = interleaved_medians(calls, args.seconds)
        profile = ort_profile(step or bundle / "model.onnx", batch=1, threads=1)
        rows.append({"cell": cell, "export": record, "us": us, "notes": notes, "profile": profile})
    result = {
        "created": datetime.now(timezone.utc).isoformat(timespec="minutes"),
        "rows": rows,
    }
    (ROOT / "benchmarks" / "results" / "step_graph.json").write_text(
        json.dumps(result, indent=1) + "\n"
    )
    section = render(result)
    replace_section(ROOT / "benchmarks" / "RESULTS.md", "step-graph", section)
    print(section)


TORCH_TARGET = {"lstm": 8.0, "gru": 6.0}  # the rest: 5x


def add_openvino(calls: dict[str, Any], bundle: Path, contract: Any, step: Path | None) -> dict:
    """OpenVINO rows, where openvino is installed; a graph it cannot load is noted, not fatal."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return {"openvino": "not installed"}
    from benchmarks.openvino_peers import stateful_step
    from edgekit.parity import error_line
    from edgekit.runtimes.layout import Layout
    from edgekit.runtimes.openvino import OpenVinoBackend

    notes = {}
    try:
        backend = OpenVinoBackend(bundle / "model.onnx", contract, threads=1, step_graph=step)
        calls["openvino"] = backend.greedy_step(1)
    except Exception as exc:
        notes["openvino"] = error_line(exc)[:160]
    try:
        source = step or bundle / "model.onnx"
        calls["openvino by hand"] = stateful_step(source, Layout.of(contract), 1, threads=1)
    except Exception as exc:
        notes["openvino by hand"] = error_line(exc)[:160]
    return notes


def add_executorch(calls: dict[str, Any], ckpt: Path) -> dict:
    """ExecuTorch (XNNPACK) on the fused step, where it is installed (`make executorch`)."""
    from benchmarks.executorch_peer import available, greedy_step

    if reason := available():
        return {"executorch by hand": reason}
    from edgekit.parity import error_line

    try:
        calls["executorch by hand"] = greedy_step(ckpt, 1, threads=1)
    except Exception as exc:  # a cell ExecuTorch cannot lower is noted, not fatal
        return {"executorch by hand": error_line(exc)[:160]}
    return {}


def render(result: dict[str, Any]) -> str:
    lines = [
        "## One-token step: step graph vs sequence graph vs torch eager",
        "",
        "Generated by `.venv/bin/python -m benchmarks.step_graph` on "
        f"{result['created']}: 2 x 256 charlm, batch 1, greedy, one thread for every runtime "
        "(numpy's BLAS too), all timed interleaved in one process (medians from one run). `used` "
        "is what export decided by its rule (the step graph unless clearly slower: the low end of "
        "the 95% interval of its time over the sequence graph's, from 15 interleaved rounds, above "
        "1.05). The GEMV floor is numpy's matrix-vector products over every weight the step "
        "multiplies (the step graph's token table is a lookup, not a product), with no gate math "
        "and no runtime call: the memory traffic a step cannot avoid.",
        "",
        "| cell | sequence graph | step graph | step / sequence | used | torch eager | "
        "runtime step vs torch | target | GEMV floor | runtime / floor | OpenVINO backend | "
        "OpenVINO by hand | where the time goes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        us, used = row["us"], row["export"]["used"]
        step = us.get("step graph")
        runtime = step if used and step else us["sequence"]
        lines.append(
            f"| {row['cell']} | {us['sequence']:.1f} us | "
            + (f"{step:.1f} us | {step / us['sequence']:.2f}x" if step else "- | -")
            + f" | {'yes' if used else 'no (' + row['export']['why'] + ')'} | {us['torch']:.1f} us | "
            f"{us['torch'] / runtime:.2f}x | {target(row['cell'], us['torch'] / runtime)} | "
            f"{us['floor']:.1f} us | {runtime / us['floor']:.2f}x | "
            f"{_cell(us, row, 'openvino')} | {_cell(us, row, 'openvino by hand')} | "
            f"{why(row, runtime)} |"
        )
    lines += [
        "",
        "Peers per cell (same run): edgekit's OpenVINO backend against OpenVINO by hand "
        "(stateful, static shapes), and edgekit's default backend (ONNX Runtime) against "
        "OpenVINO's best and against ExecuTorch by hand (XNNPACK on the same fused step, lowered "
        "from the checkpoint; where it is installed).",
        "",
        "| cell | OpenVINO backend / by hand | met | ONNX Runtime / OpenVINO's best | met | "
        "ONNX Runtime / ExecuTorch by hand | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        us = row["us"]
        runtime = us["step graph"] if row["export"]["used"] else us["sequence"]
        ours, peer = us.get("openvino"), us.get("openvino by hand")
        et = us.get("executorch by hand")
        versus_et = (
            f"{runtime / et:.2f} | {'yes' if runtime <= et else 'no'}"
            if et
            else f"- ({row['notes'].get('executorch by hand', 'not run')}) | -"
        )
        if ours is None or peer is None:
            lines.append(f"| {row['cell']} | - ({row['notes']}) | - | - | - | {versus_et} |")
            continue
        best = min(ours, peer)
        lines.append(
            f"| {row['cell']} | {ours / peer:.2f} | {'yes' if ours <= peer else 'no'} | "
            f"{runtime / best:.2f} | {'yes' if runtime <= best else 'no'} | {versus_et} |"
        )
    return "\n".join(lines) + "\n"


def target(cell: str, speedup: float) -> str:
    want = TORCH_TARGET.get(cell, 5.0)
    return f">= {want:g}x: {'met' if speedup >= want else 'not met'}"


def why(row: dict[str, Any], runtime: float) -> str:
    """What bounds the step: the floor, the node count, and what the torch target would need."""
    us, profile = row["us"], row["profile"]
    want = TORCH_TARGET.get(row["cell"], 5.0)
    need = us["torch"] / want
    products, _ = split(profile)
    text = (
        f"{profile['nodes']} nodes, products {products / profile['wall_us']:.0%} of kernel time; "
        f"torch eager is {us['torch'] / us['floor']:.1f}x the floor"
    )
    if runtime > need:
        text += f"; {want:g}x torch needs {need:.1f} us" + (
            ", under the GEMV floor" if need < us["floor"] else ""
        )
    return text


def _cell(us: dict[str, float], row: dict[str, Any], name: str) -> str:
    if name in us:
        return f"{us[name]:.1f} us"
    return f"- ({row.get('notes', {}).get(name, 'not run')})"


if __name__ == "__main__":
    main()
