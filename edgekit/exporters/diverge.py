"""Where an ONNX graph first departs from torch: the module, its ONNX node and op, and the gap.

Every module of the torch reference records its output (forward hooks); every value of a copy of
the graph is made an output and computed by ONNX Runtime on the same inputs. The exporters keep the
module path in node names ("/lm/rnn/GRU") or in node metadata, so each module's output is matched to
the last value its nodes produce with the same shape. Modules are compared in the order torch ran
them; the report lists those beyond the tolerance, largest gap first, and names the first in order.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

GLUE = {"Constant", "Transpose", "Squeeze", "Unsqueeze", "Slice", "Concat", "Reshape", "Cast",
        "Shape", "Gather", "Identity", "Expand", "ConstantOfShape"}  # fmt: skip


@dataclass(frozen=True)
class Divergence:
    module: str  # torch module path, e.g. "lm.rnn"
    node: str  # the ONNX node that does that module's work, e.g. "/lm/rnn/GRU"
    op: str  # its op type
    max_abs: float
    max_rel: float
    order: int  # when torch ran the module (0 first)

    def line(self) -> str:
        return (
            f"node {self.node} ({self.op}) in module {self.module}: "
            f"max abs gap {self.max_abs:.3g}, max rel {self.max_rel:.3g}"
        )


def _scope(node: Any) -> str:
    """The torch module path of an ONNX node ("lm.rnn"), from its metadata or its name."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                return ".".join(p for p in ast.literal_eval(prop.value) if p)
            except (ValueError, SyntaxError):
                break
    parts = node.name.strip("/").split("/")
    return ".".join(parts[:-1])


def _torch_outputs(
    module: Any, feeds: dict[str, np.ndarray], names: list[str]
) -> list[tuple[str, np.ndarray]]:
    import torch

    seen: list[tuple[str, np.ndarray]] = []

    def hook(path: str) -> Any:
        def record(_m: Any, _args: Any, out: Any) -> None:
            first = (
                out
                if isinstance(out, torch.Tensor)
                else next(
                    (
                        o
                        for o in (out if isinstance(out, (tuple, list)) else ())
                        if isinstance(o, torch.Tensor)
                    ),
                    None,
                )
            )
            if first is not None:
                seen.append((path, first.detach().cpu().numpy()))

        return record

    handles = [m.register_forward_hook(hook(p)) for p, m in module.named_modules() if p]
    try:
        with torch.inference_mode():
            module(*[torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names])
    finally:
        for h in handles:
            h.remove()
    return seen


def _graph_values(
    graph: Path, feeds: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], list[Any]]:
    """Every value of the graph, computed by ONNX Runtime; and the nodes in order."""
    import onnx
    import onnxruntime as ort

    model = onnx.shape_inference.infer_shapes(onnx.load(str(graph)))
    typed = {v.name: v for v in [*model.graph.value_info, *model.graph.output]}
    outputs = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for name in node.output:
            if name and name not in outputs and name in typed:
                model.graph.output.append(typed[name])
                outputs.add(name)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(names, feeds), strict=True))
    return values, list(model.graph.node)


def diverging_nodes(
    module: Any, graph: Path, input_names: list[str], feeds: dict[str, np.ndarray],
    atol: float, rtol: float,
) -> list[Divergence]:  # fmt: skip
    """Modules whose output differs between torch and the graph beyond atol + rtol * |torch|,
    largest gap first."""
    reference = _torch_outputs(module, feeds, input_names)
    values, nodes = _graph_values(graph, feeds)
    found = []
    for order, (path, want) in enumerate(reference):
        mine = [n for n in nodes if _scope(n) == path or _scope(n).startswith(path + ".")]
        produced = [
            (n, o) for n in mine for o in n.output if o in values and values[o].shape == want.shape
        ]
        if not produced:
            continue
        node, name = produced[-1]  # the module's result: the last value of its shape
        got = values[name].astype(np.float64)
        ref = want.astype(np.float64)
        gap = np.abs(got - ref)
        if np.all(gap <= atol + rtol * np.abs(ref)):
            continue
        work = next((n for n in mine if n.op_type not in GLUE), node)
        rel = float((gap / np.maximum(np.abs(ref), 1e-12)).max())
        found.append(Divergence(path, work.name, work.op_type, float(gap.max()), rel, order))
    # a parent differs whenever a child does: keep the deepest modules only
    deepest = [d for d in found if not any(o.module.startswith(d.module + ".") for o in found)]
    return sorted(deepest, key=lambda d: -d.max_abs)


def diagnose(plan: Any, graph: Path, atol: float, rtol: float) -> list[str]:
    """Report lines for a refused graph, at the export shapes; never raises (it explains a failure,
    it must not replace it)."""
    contract = plan.contract
    feeds = contract.feeds(contract.sizes(), np.random.default_rng(0))
    try:
        found = diverging_nodes(plan.module, graph, contract.input_names, feeds, atol, rtol)
    except Exception as exc:  # a graph ORT cannot run value by value: say so, keep the real failure
        return [f"(no per-node comparison: {type(exc).__name__}: {str(exc)[:200]})"]
    return report_lines(found)


def report_lines(found: list[Divergence], limit: int = 5) -> list[str]:
    if not found:
        return []
    first = min(found, key=lambda d: d.order)
    lines = [f"first diverging node (in torch's order): {first.line()}"]
    lines += [f"  {d.line()}" for d in found[:limit]]
    return lines
