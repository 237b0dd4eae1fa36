"""OpenVINO used by hand, as a careful user would without edgekit: the peers the OpenVINO backend
and ONNX Runtime are measured against, on the same ONNX files, in the same interleaved rounds.

- Feed-forward graphs: the file compiled as read, with the LATENCY hint and with the THROUGHPUT hint,
  inputs bound once to a request (`openvino-latency`, `openvino-throughput`).
- Every case at f32 and, where the CPU reports bf16 (AMX, AVX512_BF16), again at bf16 (OpenVINO's
  own default precision there): `openvino-latency bf16`, `openvino-stateful bf16`, ...
- Recurrent graphs: the best way measured by hand for a one-token step, the graph reshaped to static
  B, T = 1 shapes and made stateful (state inside the runtime, `make_stateful`), one request
  (`openvino-stateful`). Its state is reset to batch-sized zeros first: after `make_stateful` a
  dynamic model's default state has batch 0 and inference silently returns empty logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bench.cases import Case
from edgekit.iospec import IOContract
from edgekit.runtimes.layout import Layout


def _core_and_config(hint: str, precision: str = "f32") -> tuple[Any, dict[str, Any]]:
    import openvino as ov

    return ov.Core(), {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": precision}


def precisions() -> list[str]:
    """f32, and bf16 where OpenVINO reports the CPU can (its default precision there)."""
    import openvino as ov

    capable = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return ["f32", "bf16"] if capable else ["f32"]


def _precision(precision: str) -> str:
    """OpenVINO's name for a precision -> the bench rows' name ("f32" -> "fp32")."""
    return {"f32": "fp32"}.get(precision, precision)


def _suffix(precision: str) -> str:
    return "" if precision == "f32" else f" {precision}"


def stateful_step(
    path: Path, layout: Layout, batch: int, threads: int | None = None, precision: str = "f32"
) -> Any:
    """A greedy one-token step of `batch` streams on a static, stateful OpenVINO model."""
    import openvino as ov
    from openvino._offline_transformations import apply_make_stateful_transformation

    core, config = _core_and_config("LATENCY", precision)
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    model = core.read_model(str(path))
    shapes = {layout.tokens.name: list(layout.token_shape(batch, 1))}
    shapes |= {s.input: list(s.shape(batch)) for s in layout.state}
    model.reshape(shapes)
    apply_make_stateful_transformation(model, {s.input: s.output for s in layout.state})
    request = core.compile_model(model, "CPU", config).create_infer_request()
    for state in request.query_state():
        state.reset()
    tokens = np.zeros(layout.token_shape(batch, 1), np.int64)
    request.set_tensor(layout.tokens.name, ov.Tensor(tokens, shared_memory=True))
    next_tokens = layout.step_tokens(tokens)
    logits = request.get_tensor(layout.logits.name)

    def step() -> None:
        request.infer()
        np.argmax(layout.last_logits(logits.data), axis=-1, out=next_tokens)

    return step  # its closure holds `next_tokens`, a view that keeps the shared `tokens` alive


def openvino_peers(
    path: Path, contract: IOContract, batches: list[int], threads: int | None = None
) -> list[Case]:
    """The hand-made OpenVINO cases for one bundle graph (see the module doc), on `threads`
    threads (None: OpenVINO's default)."""
    import openvino as ov

    if contract.state:
        layout = Layout.of(contract)
        step = path.with_name("model.step.onnx")  # the bundle's one-token graph, if it has one
        source = step if step.exists() else path
        return [
            Case(
                f"openvino-stateful{_suffix(p)}",
                f"step bound B={b}",
                b,
                b,
                stateful_step(source, layout, b, threads, precision=p),
                _precision(p),
            )
            for p in precisions()
            for b in batches
        ]
    rng = np.random.default_rng(0)
    cases = []
    for p in precisions():
        for hint in ("LATENCY", "THROUGHPUT"):
            core, config = _core_and_config(hint, p)
            if threads:
                config["INFERENCE_NUM_THREADS"] = threads
            compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
            for b in batches:
                request = compiled.create_infer_request()
                feeds = contract.example(b, 1, rng)
                for name, value in feeds.items():
                    request.set_tensor(name, ov.Tensor(value, shared_memory=True))
                # the default arguments keep the shared feeds alive as long as the case
                call = lambda r=request, f=feeds: (r.infer(), f)  # noqa: E731
                label = f"openvino-{hint.lower()}{_suffix(p)}"
                cases.append(Case(label, f"batch {b}", b, b, call, _precision(p)))
    return cases
