"""The targets tables of RESULTS.md: each target, what this run measured, met or not, and for a
miss where the time goes (benchmarks/why.py: ONNX Runtime's profile of the step graph and the
rows of the same run).

`profiles[model]` holds the profiles of that model's step graphs taken at the table's thread
count: "fp32" and "int8" at batch 1, "fp32 B=64" at 64 streams.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import why
from edgekit.bundle import Bundle
from edgekit.runtimes.threads import step_threads

Profiles = dict[str, dict[str, Any]]
STEP_PEERS = (
    ("openvino-stateful", "OpenVINO by hand (stateful, static, f32)"),
    ("executorch-xnnpack", "ExecuTorch by hand (XNNPACK, fused cell)"),
)
HEADER = ["| target | measured | met | where the time goes (misses) |", "|---|---|---|---|"]


def line(target: str, measured: str, ok: bool, reason: str = "") -> str:
    return f"| {target} | {measured} | {'yes' if ok else 'no'} | {'' if ok else reason} |"


def _row(doc: dict[str, Any], backend: str, case: str) -> dict[str, Any] | None:
    return next((r for r in doc["results"] if r["backend"] == backend and r["case"] == case), None)


def _best(doc: dict[str, Any], backends: tuple[str, ...], case: str) -> dict[str, Any] | None:
    rows = [r for b in backends if (r := _row(doc, b, case)) is not None]
    return min(rows, key=lambda r: r["p50_us"]) if rows else None


def _at(profiles: dict[str, Any], key: str, row: dict[str, Any]) -> dict[str, Any] | None:
    """The profile `key`, read against `row` (why.scaled), or None where it was not taken."""
    return why.scaled(profiles[key], row["p50_us"]) if key in profiles else None


def versus_torch(
    label: str, row: dict[str, Any], want: float, floor: float, profiles: dict[str, Any]
) -> str:
    """`label`, B=1: at least `want` times faster than torch eager (its fp32 step profile)."""
    torch_us = row["p50_us"] * row["speedup_vs_torch"]
    return line(
        f"{label}, B=1: >= {want:g}x torch eager",
        f"{row['speedup_vs_torch']:.2f}x ({row['p50_us']:.1f} us)",
        row["speedup_vs_torch"] >= want,
        why.torch_short(torch_us, want, floor, _at(profiles, "fp32", row)),
    )


def _floor(doc: dict[str, Any], case: str) -> float | None:
    row = _row(doc, "numpy-floor", case)
    return row["p50_us"] if row else None


def conv_flops(graph: Path) -> int:
    """Multiply-add FLOPs of one image through every Conv and weight product (dynamic dims = 1)."""
    import onnx
    from onnx import shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(graph)))
    values = [*model.graph.value_info, *model.graph.output, *model.graph.input]
    shapes = {v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim] for v in values}
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    flops = 0
    for node in model.graph.node:
        w = weights.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type == "Conv" and w:  # 2 x output elements x (in channels x kernel area)
            flops += 2 * int(np.prod(shapes[node.output[0]])) * int(np.prod(w[1:]))
        elif node.op_type in ("Gemm", "MatMul") and w:
            flops += 2 * int(np.prod(w))
    return flops


def targets(docs: dict[str, Any], gen: dict[str, Any], profiles: Profiles) -> list[str]:
    """The default-thread table."""
    lines = [
        "Per-cell targets (every recurrent cell against torch, the GEMV floor and OpenVINO, one "
        "thread each) are in the step-graph section below.",
        "",
        *HEADER,
    ]
    lstm = docs.get("charlm-lstm")
    prof = profiles.get("charlm-lstm", {})
    if lstm and (r := _row(lstm, "ort-cpu", "step bound B=1")) and r["speedup_vs_torch"]:
        floor = _floor(lstm, "step bound B=1") or r["p50_us"] / r["vs_floor"]
        lines += [
            line(
                "LSTM charlm fp32 step, B=1 (ORT default threads): <= 1.10x the weight-GEMV floor",
                f"{r['vs_floor']:.2f}x ({r['p50_us']:.1f} us)",
                r["vs_floor"] <= 1.10,
                why.over_floor(at, floor) if (at := _at(prof, "fp32", r)) else "",
            ),
            versus_torch("LSTM charlm fp32 step", r, 8, floor, prof),
        ]
    if lstm and (r := _row(lstm, "ort-cpu", "step bound B=64")) and r.get("vs_floor"):
        peak = f", {r['of_peak']:.0%} of FMA peak" if r.get("of_peak") else ""
        floor = _floor(lstm, "step bound B=64") or r["p50_us"] / r["vs_floor"]
        at = _at(prof, "fp32 B=64", r)
        reason = why.streams_short(at, floor) if at else ""
        lines.append(
            line(
                "LSTM charlm, 64 batched streams: >= 1.0x numpy's GEMM floor (time <= floor)",
                f"{1 / r['vs_floor']:.2f}x the floor's tokens/s ({r['p50_us']:.1f} us a step{peak})",
                r["vs_floor"] <= 1.0,
                reason,
            )
        )
    gru = docs.get("charlm-gru")
    if gru and (r := _row(gru, "ort-cpu", "step bound B=1")) and r["speedup_vs_torch"]:
        floor = _floor(gru, "step bound B=1") or r["p50_us"] / r["vs_floor"]
        lines.append(versus_torch("GRU charlm step", r, 6, floor, profiles.get("charlm-gru", {})))
    lines += peer_targets(docs, profiles)
    ratio = gen["generate_batch_1_vs_session_step"]
    lines.append(
        line(
            "generate_batch with one prompt within 1.05x of session.step (per token)",
            f"{ratio:.3f}",
            ratio <= 1.05,
        )
    )
    ratio = gen["generator_vs_raw_p50"]
    lines.append(
        line(
            "Generator step within 1.10x of a raw ORT IO-binding loop",
            f"{ratio:.3f}",
            ratio <= 1.10,
        )
    )
    lines += _cnn_f32(docs.get("cnn"))
    return lines


def _cnn_f32(cnn: dict[str, Any] | None) -> list[str]:
    lines = []
    for b in (1, 8, 32) if cnn else ():
        assert cnn is not None
        ours = _best(cnn, ("ort-cpu", "openvino"), f"batch {b}")
        peer = _best(cnn, ("openvino-latency", "openvino-throughput"), f"batch {b}")
        if ours and peer:
            lines.append(
                line(
                    f"cat/dog CNN, B={b}: edgekit's best backend no slower than OpenVINO by hand "
                    "(LATENCY/THROUGHPUT hint)",
                    f"{ours['backend']} {ours['p50_us']:.1f} vs {peer['backend']} "
                    f"{peer['p50_us']:.1f} us",
                    ours["p50_us"] <= peer["p50_us"],
                    why.tie(ours, peer),
                )
            )
        if b == 1 and ours and ours["speedup_vs_torch"]:
            gflops = conv_flops(Path(cnn["bundle"]) / "model.onnx") / (ours["p50_us"] * 1e3)
            peak = cnn["machine"]["fma_peak"]
            lines.append(
                line(
                    "cat/dog CNN, B=1: >= 6x torch eager",
                    f"{ours['speedup_vs_torch']:.2f}x ({ours['backend']}: {gflops:.0f} GFLOP/s in "
                    f"its convolutions and products, against an FMA peak of {peak['gflops']:.0f} at "
                    f"the reported clock and {peak['numpy_sgemm_gflops']:.0f} for numpy's SGEMM)",
                    ours["speedup_vs_torch"] >= 6,
                )
            )
    return lines


def peer_targets(docs: dict[str, Any], profiles: Profiles) -> list[str]:
    """The steps and the CNN against the peers by hand at the same precision, the step graph's
    GEMV floor, torch, and int8 against fp32 (missing rows are skipped)."""
    lines = []
    for name, cell in (("charlm-lstm", "LSTM"), ("charlm-gru", "GRU")):
        doc = docs.get(name)
        ours = _row(doc, "ort-cpu", "step bound B=1") if doc else None
        if doc is None or ours is None:
            continue
        prof = profiles.get(name, {})
        floor = _floor(doc, "step bound B=1")
        for peer_name, label in STEP_PEERS:
            if peer := _row(doc, peer_name, "step bound B=1"):
                ratio = ours["p50_us"] / peer["p50_us"]
                lines.append(
                    line(
                        f"{cell} step, B=1: edgekit's default (ort-cpu) <= 1.0x {label}",
                        f"{ratio:.2f}x ({ours['p50_us']:.1f} vs {peer['p50_us']:.1f} us)",
                        ratio <= 1.0,
                        why.tie(ours, peer)
                        + (f"; {why.nodes(at)}" if (at := _at(prof, "fp32", ours)) else ""),
                    )
                )
        if ours.get("vs_floor") and floor:
            lines.append(
                line(
                    f"{cell} step, B=1: <= 1.25x the step graph's GEMV floor",
                    f"{ours['vs_floor']:.2f}x ({ours['p50_us']:.1f} vs {floor:.1f} us)",
                    ours["vs_floor"] <= 1.25,
                    why.over_floor(at, floor) if (at := _at(prof, "fp32", ours)) else "",
                )
            )
        if cell == "GRU" and ours.get("speedup_vs_torch") and floor:
            lines.append(versus_torch("GRU step", ours, 4, floor, prof))
        if int8 := _row(doc, "ort-cpu int8", "step bound B=1"):
            ratio = int8["p50_us"] / ours["p50_us"]
            reason = (
                why.int8_short(a, b)
                if (a := _at(prof, "int8", int8)) and (b := _at(prof, "fp32", ours))
                else ""
            )
            lines.append(
                line(
                    f"{cell} int8 step, B=1: <= 0.5x fp32",
                    f"{ratio:.2f}x ({int8['p50_us']:.1f} us)",
                    ratio <= 0.5,
                    reason,
                )
            )
        bf16, peer16 = (
            _row(doc, b, "step bound B=1") for b in ("openvino bf16", "openvino-stateful bf16")
        )
        if bf16 and peer16:
            ratio = bf16["p50_us"] / peer16["p50_us"]
            lines.append(
                line(
                    f"{cell} bf16 step, B=1: edgekit (openvino bf16) <= 1.0x OpenVINO by hand at bf16",
                    f"{ratio:.2f}x ({bf16['p50_us']:.1f} vs {peer16['p50_us']:.1f} us)",
                    ratio <= 1.0,
                    why.tie(bf16, peer16),
                )
            )
    return lines + _cnn_variants(docs.get("cnn"))


def _cnn_variants(cnn: dict[str, Any] | None) -> list[str]:
    lines = []
    for precision, ours_b, peers_b in (
        ("bf16", ("openvino bf16",), ("openvino-latency bf16", "openvino-throughput bf16")),
        ("int8", ("ort-cpu int8", "openvino int8"), ()),
    ):
        for b in (1, 8, 32) if cnn else ():
            assert cnn is not None
            ours = _best(cnn, ours_b, f"batch {b}")
            peer = _best(cnn, peers_b, f"batch {b}") if peers_b else None
            if ours and peer:
                lines.append(
                    line(
                        f"cat/dog CNN {precision}, B={b}: edgekit's best <= 1.0x OpenVINO by hand at "
                        f"{precision}",
                        f"{ours['backend']} {ours['p50_us']:.1f} vs {peer['backend']} "
                        f"{peer['p50_us']:.1f} us",
                        ours["p50_us"] <= peer["p50_us"],
                        why.tie(ours, peer),
                    )
                )
            elif ours and not peers_b:
                lines.append(
                    f"| cat/dog CNN {precision}, B={b}: edgekit's best against OpenVINO by hand at "
                    f"{precision} | {ours['backend']} {ours['p50_us']:.1f} us | not measured | "
                    "no OpenVINO int8 by hand here: it needs NNCF's quantizer, not installed |"
                )
    return lines


def step_profiles(docs: dict[str, Any], threads: int | None) -> Profiles:
    """The profiles the reasons read, for each recurrent model benched (see the module doc)."""
    out: Profiles = {}
    for name in ("charlm-lstm", "charlm-gru"):
        if name not in docs:
            continue
        bundle = Path(docs[name]["bundle"])
        manifest = Bundle.read(bundle).manifest
        out[name] = {}
        for precision in ("fp32", "int8"):
            step = manifest.at(precision).step_graph if precision in manifest.precisions else None
            if step is None or not step.file:
                continue
            # the threads the runtime steps on: the table's count, or else its rule
            used = threads if threads is not None else step_threads(bundle / step.file)
            out[name][precision] = why.ort_profile(bundle / step.file, 1, used)
            if name == "charlm-lstm" and precision == "fp32":  # 64 streams: as bench runs them
                out[name]["fp32 B=64"] = why.ort_profile(bundle / step.file, 64, used, calls=400)
    return out
