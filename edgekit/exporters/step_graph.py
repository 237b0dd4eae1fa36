"""A one-token step graph for the recurrent zoo models, exported beside the sequence graph.

The sequence graph serves any T (prompt prefill) and carries the glue a dynamic time axis needs
(Transpose, Slice, Squeeze, Concat around the RNN ops, a one-hot product at the input). At T = 1
that glue is most of a step. The step graph is the same function for T = 1 only:

- layer 0's input projection is a row gather from a (V, G) table (the one-hot or embedding input
  multiplied out in advance, its bias folded in);
- each further layer is one matrix product over [x, h] (GRU: two, since its candidate gate scales
  the recurrent part by r) and the gate math;
- the head is one Gemm.

It is checked against the torch reference over random states and a teacher-forced rollout, timed
against the sequence graph's step over interleaved rounds, and used by the runtime for steps unless
clearly slower (`step_graph_pays`); it is kept either way, for `edgekit quantize` to derive an int8
step graph from, and `edgekit.load(..., step_graph=True/False)` overrides the choice.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekit.bundle.io import IOContract
from edgekit.bundle.parts import StepGraph, Tolerance
from edgekit.models.charlm import CharLM
from edgekit.parity import compare_outputs
from edgekit.rollout import rollout
from edgekit.runtimes.base import Backend
from edgekit.runtimes.onnxruntime import OrtBackend
from edgekit.timing import paired_ratio

STEP_GRAPH = "model.step.onnx"
KIND = {"lstm": "lstm", "scratch-lstm": "lstm", "gru": "gru", "rnn": "rnn", "scratch-rnn": "rnn"}
SLOWER = 1.05  # the step graph is not used when its step is clearly this much slower (see below)


def _layer_weights(lm: CharLM, k: int) -> tuple[torch.Tensor, ...]:
    """(W_x (G, I), W_h (G, H), b_x (G,), b_h (G,)) of layer k, gates in torch's order
    (LSTM i, f, g, o; GRU r, z, n). G is the gate width: 4H, 3H or H."""
    cell, h = lm.config.cell, lm.config.hidden
    if lm.rnn is not None:
        get = lambda name: getattr(lm.rnn, f"{name}_l{k}").detach()  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")
    layer: Any = lm.cells[k]
    if cell == "scratch-rnn":  # i2h over cat[x, h]
        w, b = layer.i2h.weight.detach(), layer.i2h.bias.detach()
        return w[:, :-h], w[:, -h:], b, torch.zeros_like(b)
    # scratch-lstm: gates over cat[h, x], chunks f, i, g, o -> torch's i, f, g, o
    w, b = layer.gates.weight.detach(), layer.gates.bias.detach()
    order = _gate_rows(h, (1, 0, 2, 3))
    w, b = w[order], b[order]
    return w[:, h:], w[:, :h], b, torch.zeros_like(b)


def _gate_rows(h: int, chunks: tuple[int, ...]) -> torch.Tensor:
    """Row indices that put the H-row chunks of a gate matrix in the order `chunks`."""
    return torch.cat([torch.arange(c * h, (c + 1) * h) for c in chunks])


def _ifog(weights: tuple[torch.Tensor, ...], h: int) -> tuple[torch.Tensor, ...]:
    """LSTM gates i, f, g, o -> i, f, o, g: the three sigmoid gates side by side, one Sigmoid."""
    order = _gate_rows(h, (0, 1, 3, 2))
    return tuple(w[order] for w in weights)


class StepLM(nn.Module):
    """tokens (B, 1), state (L, B, H) ... -> logits (B, 1, V), new state: one CharLM step."""

    table: torch.Tensor  # (V, G): layer 0's gate pre-activations per token, biases folded in
    wh0: torch.Tensor  # (H, G)
    bh0: torch.Tensor  # (G,) GRU's recurrent bias (kept apart: r scales it); empty otherwise

    def __init__(self, lm: CharLM) -> None:
        super().__init__()
        cfg = lm.config
        self.kind, self.layers, self.hidden = KIND[cfg.cell], cfg.layers, cfg.hidden
        with torch.no_grad():
            inputs = (
                lm.embedding.weight.detach()
                if lm.embedding is not None
                else torch.eye(cfg.vocab_size)
            )  # (V, I): what layer 0 sees for each token
            weights = lambda k: (  # noqa: E731
                _ifog(_layer_weights(lm, k), cfg.hidden)
                if self.kind == "lstm"
                else _layer_weights(lm, k)
            )
            wx, wh, bx, bh = weights(0)
            gru = self.kind == "gru"
            self.register_buffer("table", inputs @ wx.T + bx + (0 if gru else bh))  # (V, G)
            self.register_buffer("wh0", wh.T.contiguous())  # (H, G)
            self.register_buffer("bh0", bh if gru else torch.zeros(0))
            for k in range(1, cfg.layers):
                wx, wh, bx, bh = weights(k)
                if gru:  # x and h projections stay apart
                    self.register_buffer(f"wx{k}", wx.T.contiguous())
                    self.register_buffer(f"wh{k}", wh.T.contiguous())
                    self.register_buffer(f"bx{k}", bx)
                    self.register_buffer(f"bh{k}", bh)
                else:  # one product over [x, h]
                    self.register_buffer(f"w{k}", torch.cat([wx, wh], 1).T.contiguous())
                    self.register_buffer(f"b{k}", bx + bh)
            self.head = nn.Linear(cfg.hidden, cfg.vocab_size)
            self.head.load_state_dict(lm.head.state_dict())

    def _cell(
        self, gx: torch.Tensor, gh: torch.Tensor | None, h: torch.Tensor, c: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # gx: (B, G), the summed gate pre-activations (GRU: x part only; gh: the h part)
        if self.kind == "rnn":
            return torch.tanh(gx), None
        if self.kind == "lstm":
            assert c is not None
            ifo, g = gx.split([3 * self.hidden, self.hidden], dim=1)  # fixed sizes: no shape math
            i, f, o = torch.sigmoid(ifo).split(self.hidden, dim=1)
            c = f * c + i * torch.tanh(g)
            return o * torch.tanh(c), c
        assert gh is not None
        xrz, xn = gx.split([2 * self.hidden, self.hidden], dim=1)
        hrz, hn = gh.split([2 * self.hidden, self.hidden], dim=1)
        r, z = torch.sigmoid(xrz + hrz).split(self.hidden, dim=1)
        n = torch.tanh(xn + r * hn)
        return n + z * (h - n), None  # = (1 - z) n + z h

    def _buffer(self, name: str) -> torch.Tensor:
        value = getattr(self, name)
        assert isinstance(value, torch.Tensor)
        return value

    def forward(self, tokens: torch.Tensor, h: torch.Tensor, *rest: torch.Tensor) -> Any:
        c = rest[0] if rest else None
        x = self.table[tokens[:, 0]]  # (B, G): layer 0's input projection, one row per stream
        hs, cs = [], []
        for k in range(self.layers):
            hk, ck = h[k], (c[k] if c is not None else None)
            if k == 0:
                gx = x if self.kind == "gru" else x + hk @ self.wh0
                gh = hk @ self.wh0 + self.bh0 if self.kind == "gru" else None
            elif self.kind == "gru":
                gx = x @ self._buffer(f"wx{k}") + self._buffer(f"bx{k}")
                gh = hk @ self._buffer(f"wh{k}") + self._buffer(f"bh{k}")
            else:
                gx = torch.cat([x, hk], 1) @ self._buffer(f"w{k}") + self._buffer(f"b{k}")
                gh = None
            x, ck = self._cell(gx, gh, hk, ck)
            hs.append(x)
            cs.append(ck)
        logits = self.head(x)[:, None]  # (B, 1, V)
        if c is None:
            return logits, torch.stack(hs)
        return logits, torch.stack(hs), torch.stack([s for s in cs if s is not None])


def export_step_graph(lm: CharLM, contract: IOContract, path: Path) -> None:
    step = StepLM(lm).eval()
    names = [t.name for t in contract.inputs]
    feeds = contract.feeds({"batch": 2, "time": 1}, np.random.default_rng(0))
    batch_axes = {
        t.name: {t.shape.index("batch"): "batch"} for t in [*contract.inputs, *contract.outputs]
    }
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore")
        _export(step, feeds, names, contract, batch_axes, path)


def _export(
    step: StepLM,
    feeds: dict[str, np.ndarray],
    names: list[str],
    contract: IOContract,
    batch_axes: dict[str, dict[int, str]],
    path: Path,
) -> None:
    # traced (TorchScript) at T = 1: the layer loop unrolls, the graph has no Loop and no time axis
    torch.onnx.export(
        step,
        tuple(torch.from_numpy(feeds[n]) for n in names),
        str(path),
        input_names=names,
        output_names=[t.name for t in contract.outputs],
        dynamic_axes=batch_axes,
        opset_version=17,
        dynamo=False,
    )


def check_step_graph(
    reference: Backend, step: OrtBackend, contract: IOContract, atol: float, rtol: float, steps: int
) -> list[str]:
    """Failures of the step graph against torch: random states at batch 1 and 3, then a
    teacher-forced greedy rollout from zero state (torch's tokens fed to both)."""
    layout = step.layout
    failures = []
    rng = np.random.default_rng(7)
    for batch in (1, 3):
        feeds = contract.feeds({"batch": batch, "time": 1}, rng)
        for name, zeros in layout.zero_state(batch).items():  # states a trained model reaches
            feeds[name] = rng.standard_normal(zeros.shape).astype(np.float32)
        diffs = compare_outputs(reference.run(feeds), step.run(feeds), atol, rtol)
        failures += [f"B={batch} {d.name}: max abs {d.max_abs:.3g}" for d in diffs if not d.passed]
    # the export's own rollout check, from a one-token prompt (the step graph takes T = 1 only)
    prompt = np.zeros((1, 1), np.int64)
    result = rollout(reference.stepper(1), step.stepper(1), atol, rtol, prompt, steps)
    if not result.passed:
        failures.append(
            f"rollout over {steps} steps: {result.error or 'max abs logit diff'} "
            f"{result.max_logit_diff:.3g}"
            + (
                f", greedy choice differs at step {result.decisive_mismatch}"
                if result.decisive_mismatch is not None
                else ""
            )
        )
    return failures


def step_speed(sequence: OrtBackend, step: OrtBackend, seconds: float = 1.5) -> dict[str, Any]:
    """A greedy step (bound, batch 1) on each graph, compared over interleaved rounds in one
    process (timing.paired_ratio): medians, the step/sequence ratio and its 95% interval."""
    paired = paired_ratio(step.greedy_step(1), sequence.greedy_step(1), seconds=seconds)
    return {
        "sequence_us": paired["baseline_us"],
        "step_us": paired["candidate_us"],
        "ratio": paired["ratio"],
        "ci95": paired["ci95"],
        "rounds": paired["rounds"],
    }


def clearly_faster(speed: dict[str, Any]) -> bool:
    """A variant's step graph is a file of its own: kept where it pays, where even the high end of
    its ratio's 95% interval is below 1 (also a rule on the interval, so it does not flip)."""
    return float(speed["ci95"][1]) < 1.0


def step_graph_pays(speed: dict[str, Any]) -> bool:
    """The rule: the step graph does the sequence graph's work at T = 1 with fewer nodes, so it is
    used unless clearly slower: unless even the low end of its ratio's 95% interval is above
    SLOWER. A near tie (both within a few percent, as ORT's fused LSTM op often is) stays on the
    step graph, so three exports of one checkpoint choose alike under any load."""
    return float(speed["ci95"][0]) <= SLOWER


def add_step_graph(
    bundle: Path,
    reference: Backend,
    tolerance: Tolerance,
    steps: int,
    *,
    build: Callable[[Any, IOContract, Path], None],
    model: nn.Module,
    contract: IOContract,
) -> StepGraph:
    """Export `model`'s step graph with its spec's `build`, check it against the torch reference
    and time it against the sequence graph, in `bundle`; return its manifest record. A step graph
    that fails its check is removed (the record says why)."""
    atol, rtol = tolerance.atol, tolerance.rtol
    lm = model
    path = bundle / STEP_GRAPH
    build(lm, contract, path)
    step = OrtBackend(path, contract, threads=1)
    rollout = min(steps, 100)
    failures = check_step_graph(reference, step, contract, atol, rtol, rollout)
    if failures:  # the sequence graph serves steps too; say why the step graph is not used
        path.unlink()
        return StepGraph(False, why="; ".join(failures[:3]))
    speed = step_speed(OrtBackend(bundle / "model.onnx", contract, threads=1), step)
    used = step_graph_pays(speed)
    # kept even when fp32 does not use it: `edgekit quantize` derives an int8 step graph from it,
    # whose MatMuls quantize where the sequence graph's GRU/RNN ops cannot
    low, high = speed["ci95"]
    measured = (
        f"{speed['ratio']:.2f}x the sequence graph's step (95% interval {low:.2f}-{high:.2f})"
    )
    why = (
        f"not clearly slower: {measured}"
        if used
        else f"clearly slower: {measured}, above {SLOWER}x at its low end"
    )
    checked = f"random states at batch 1 and 3, a {rollout}-step teacher-forced rollout"
    return StepGraph(used, STEP_GRAPH, why, {"speed": speed, "checked": checked})
