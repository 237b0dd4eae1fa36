"""Acceptance gates for a reduced-precision variant, against the fp32 bundle and torch's records.

Each gate is measured and reported; the ones with a bar decide:

- classification: top-1 agreement with fp32 of at least `min_agreement` (less one example when
  fewer than 200 rows are compared), always, and accuracy on held-out labels within
  `max_accuracy_drop` of the fp32 bundle's (or one example, on fewer than 200 rows) when there are
  labels; agreement with torch on its golden inputs is reported;
- regression and generic graphs: output error relative to the outputs' own magnitude (and to
  torch's golden outputs, reported);
- language models: held-out perplexity within `max_perplexity_delta` of fp32, next-token top-1
  agreement with torch (teacher-forced over its greedy rollout) and with fp32 on held-out text;
  the first step where the variant's own greedy text leaves torch's, and the state drift relative
  to the state's magnitude (an LSTM's cell state reaches the hundreds, h stays within 1) are
  reported beside them.

Held-out data is the model's own test split, rebuilt from the data description; without it, the
gates fall back to torch's golden records (agreement only) and say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.directory import Bundle
from edgekit.bundle.io import IOContract
from edgekit.bundle.layout import Layout
from edgekit.bundle.manifest import Manifest
from edgekit.exporters.samples import Split
from edgekit.rollout import trace
from edgekit.runtimes.base import Backend
from edgekit.runtimes.golden import stored_trace
from edgekit.runtimes.onnxruntime import OrtBackend
from edgekit.timing import interleaved_medians

SMALL_HELD_OUT = 200  # below this many rows, one example is a coarser step than the accuracy bar
TEXT_LIMIT = 20_000  # held-out characters scored for perplexity (the 2x256 LSTM: ~2 s per graph)
SPEED_SECONDS = 2.0  # timing window, fp32 and variant interleaved


@dataclass(frozen=True)
class Bars:
    max_accuracy_drop: float = 0.005  # 0.5 points
    max_perplexity_delta: float = 0.01  # relative, either way
    min_agreement: float = 0.99  # next-token / class top-1 agreement
    max_output_error: float = 0.02  # regression/generic: ||variant - fp32|| / ||fp32||


BARS = Bars()


def measure(
    bundle: Path,
    manifest: Manifest | Mapping[str, Any],
    variant_graph: Path,
    split: Split | None,
    bars: Bars = BARS,
    optimization: str = "all",
    variant_step: Path | None = None,
) -> dict[str, Any]:
    """Every gate for `variant_graph` (opened at ORT `optimization` level; stepping on
    `variant_step` when given), with "passed" and the "failures" that decided it."""
    read = Bundle(Path(bundle), Manifest.of(manifest))
    fp32 = OrtBackend(read.graph, read.contract, threads=1)
    variant = OrtBackend(
        variant_graph, read.contract, threads=1, optimization=optimization, step_graph=variant_step
    )
    return measure_backends(read, fp32, variant, split, bars)


def measure_backends(
    read: Bundle, fp32: Backend, variant: Backend, split: Split | None, bars: Bars = BARS
) -> dict[str, Any]:
    """Every gate for the `variant` backend against `fp32` (both already open), torch's golden
    records and held-out data, with "passed" and the "failures" that decided it."""
    manifest, contract = read.manifest, read.contract
    golden = read.golden_arrays()
    run = _Run(golden, fp32, variant, split, bars, {"bars": asdict(bars)})
    if manifest.task == "generate" and contract.state and contract.token_input:
        _language_model(run, contract.layout())
    else:
        _outputs(run, manifest, contract)
    return {**run.gates, "failures": run.failures, "passed": not run.failures}


@dataclass
class _Run:
    """What every gate reads (torch's golden arrays, both graphs, the held-out split, the bars)
    and what it writes (its measurements, and a line per missed bar)."""

    golden: dict[str, np.ndarray]
    fp32: Backend
    variant: Backend
    split: Split | None
    bars: Bars
    gates: dict[str, Any]
    failures: list[str] = field(default_factory=list)


# --- classifiers, regressors, generic graphs ---------------------------------------------------------


def _outputs(run: _Run, manifest: Manifest, contract: IOContract) -> None:
    gates, failures, golden, bars, split = run.gates, run.failures, run.golden, run.bars, run.split
    fp32, variant = run.fp32, run.variant
    first = contract.outputs[0].name
    # against torch: its own outputs, from the golden records
    cases, torch_note = _golden_cases(manifest, contract, golden)
    torch_ref = np.concatenate([out[first].reshape(-1, out[first].shape[-1]) for _, out in cases])
    torch_got = np.concatenate(
        [variant.run(feeds)[first].reshape(-1, torch_ref.shape[-1]) for feeds, _ in cases]
    )
    if split is not None:  # against the fp32 bundle, on held-out data
        gates["held_out"] = split.label()
        ref, got = _batched(fp32, split.test, first), _batched(variant, split.test, first)
    else:
        gates["held_out"], ref, got = torch_note, torch_ref, torch_got
    if manifest.task == "classify":
        p32, p8 = _classes(ref), _classes(got)
        gates["top1_agreement"] = float((p32 == p8).mean())
        gates["top1_agreement_torch"] = float((_classes(torch_ref) == _classes(torch_got)).mean())
        # agreement always decides: labels can hide a variant that is right for other reasons
        # (or as often wrong in other places); on few rows, one flip is a coarser step than the bar
        floor = bars.min_agreement - (1.0 / len(p32) if len(p32) < SMALL_HELD_OUT else 0.0)
        if gates["top1_agreement"] < floor - 1e-12:
            failures.append(f"top-1 agreement {gates['top1_agreement']:.2%} < {floor:.2%}")
        if split is not None and split.targets is not None:
            n = len(split.targets)
            gates["accuracy_fp32"] = float((p32 == split.targets).mean())
            gates["accuracy_variant"] = float((p8 == split.targets).mean())
            gates["accuracy_delta"] = gates["accuracy_variant"] - gates["accuracy_fp32"]
            allowed = max(bars.max_accuracy_drop, 1.0 / n if n < SMALL_HELD_OUT else 0.0)
            if gates["accuracy_delta"] < -allowed - 1e-12:
                failures.append(
                    f"held-out accuracy drops {-gates['accuracy_delta']:.2%} (allowed {allowed:.2%})"
                )
        return
    error = _relative_error(got, ref)
    gates["output_error"] = error
    gates["output_error_torch"] = _relative_error(torch_got, torch_ref)
    if split is not None and split.targets is not None and manifest.task == "regress":
        want = split.targets.reshape(ref.shape)
        gates["rmse_fp32"] = float(np.sqrt(((ref - want) ** 2).mean()))
        gates["rmse_variant"] = float(np.sqrt(((got - want) ** 2).mean()))
    if error > bars.max_output_error:
        failures.append(
            f"output error {error:.2%} of the outputs' size > {bars.max_output_error:.0%}"
        )


def _relative_error(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(got - ref) / max(float(np.linalg.norm(ref)), 1e-12))


def _golden_cases(
    manifest: Manifest, contract: IOContract, golden: dict[str, np.ndarray]
) -> tuple[list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]], str]:
    """(feeds, torch's outputs) of the golden records' real cases; without any (a user module
    exported without data), of the shape cases, whose random inputs are regenerated from seeds."""
    cases = manifest.golden.cases if manifest.golden is not None else ()
    real = [c for c in cases if c.seed is None]

    def section(key: str, part: str) -> dict[str, np.ndarray]:
        prefix = f"{key}/{part}/"
        return {k[len(prefix) :]: v for k, v in golden.items() if k.startswith(prefix)}

    if real:
        pairs = [(section(c.key, "in"), section(c.key, "out")) for c in real]
        return pairs, "torch's golden real inputs (no labelled data available)"
    pairs = [
        (contract.feeds(c.sizes or {}, np.random.default_rng(c.seed)), section(c.key, "out"))
        for c in cases
    ]
    return pairs, "torch's golden shape cases (random inputs: pass --calibration for real data)"


def _batched(backend: Backend, feeds: dict[str, np.ndarray], output: str) -> np.ndarray:
    rows = len(next(iter(feeds.values())))
    return np.concatenate(
        [
            backend.run({k: v[s : s + 64] for k, v in feeds.items()})[output]
            for s in range(0, rows, 64)
        ]
    )


def _classes(out: np.ndarray) -> np.ndarray:
    if out.shape[-1] == 1:  # one sigmoid probability
        return (out[..., 0] >= 0.5).astype(np.int64)
    return out.argmax(-1)


# --- language models ----------------------------------------------------------------------------------


def _language_model(run: _Run, layout: Layout) -> None:
    gates, failures, golden, bars, split = run.gates, run.failures, run.golden, run.bars, run.split
    fp32, variant = run.fp32, run.variant
    torch_run = stored_trace(golden)
    prompt, tokens = torch_run.prompt, torch_run.tokens
    # the path generation takes: prefill, then steps (on the variant's step graph if it has one),
    # teacher-forced on torch's rollout
    context = torch_run.context  # a decoder's encoder outputs, as the golden record kept them
    seen = trace(variant.stepper(1), prompt, forced=tokens, every_state=False, context=context)
    agree = int((seen.logits.argmax(-1) == torch_run.logits.argmax(-1)).sum())
    gates["top1_agreement"] = agree / (len(tokens) + 1)
    state = seen.states[-1]
    gates["state_drift"] = {  # after the whole rollout, relative to the state's magnitude
        name: float(np.abs(state[name] - want).max() / max(float(np.abs(want).max()), 1e-12))
        for name, want in torch_run.states[-1].items()
    }
    gates["first_greedy_divergence"] = _divergence(variant, prompt, tokens, context)
    gates["rollout_steps"] = len(tokens)
    if split is not None and split.text is not None:
        text = split.text[:TEXT_LIMIT]
        gates["held_out"] = f"{len(text)} held-out characters"
        z32 = _stream_logits(layout, fp32, text, context)
        z8 = _stream_logits(layout, variant, text, context)
    else:
        suffix = "/in/" + layout.tokens.name
        key = next((k[: -len(suffix)] for k in golden if k.endswith(suffix)), None)
        if key is not None:  # a real-text record
            text = golden[f"{key}{suffix}"][0]
            gates["held_out"] = f"{len(text)} held-out characters (from the golden records)"
            z32 = golden[f"{key}/out/{layout.logits.name}"][0]
        else:  # a user's module has no text of its own: torch's greedy rollout stands in
            text = np.concatenate([np.ravel(prompt), np.ravel(tokens)])
            gates["held_out"] = f"{len(text)} tokens of torch's greedy rollout (no held-out text)"
            z32 = _stream_logits(layout, fp32, text, context)
        z8 = _stream_logits(layout, variant, text, context)
    gates["perplexity_fp32"] = _perplexity(z32, text)
    gates["perplexity_variant"] = _perplexity(z8, text)
    gates["perplexity_delta"] = gates["perplexity_variant"] / gates["perplexity_fp32"] - 1
    gates["top1_agreement_text"] = float((z32.argmax(-1) == z8.argmax(-1)).mean())
    for name in ("top1_agreement", "top1_agreement_text"):
        if gates[name] < bars.min_agreement:
            failures.append(
                f"{name.replace('_', ' ')} {gates[name]:.2%} < {bars.min_agreement:.0%}"
            )
    if abs(gates["perplexity_delta"]) > bars.max_perplexity_delta:
        failures.append(
            f"held-out perplexity {gates['perplexity_delta']:+.2%} vs fp32 "
            f"(allowed ±{bars.max_perplexity_delta:.0%})"
        )


def _divergence(
    variant: Backend, prompt: np.ndarray, tokens: np.ndarray, context: dict[str, np.ndarray]
) -> int | None:
    """The first step where the variant's own greedy choice leaves torch's (None: never)."""
    free = trace(variant.stepper(1), prompt, len(tokens), every_state=False, context=context)
    own = free.tokens  # greedy
    left = np.flatnonzero(own != tokens)
    return int(left[0]) if left.size else None


def _stream_logits(
    layout: Layout,
    backend: Backend,
    text: np.ndarray,
    context: dict[str, np.ndarray],
    chunk: int = 256,
) -> np.ndarray:
    """Logits (N, V) for one stream of token ids (N,), state carried across chunks. A backend
    with a step graph, or a step-only graph, is stepped token by token: that is what its
    generation runs."""
    if getattr(backend, "step_session", None) is not None or layout.contract.step_only:
        forced = trace(
            backend.stepper(1), text[None, :1], forced=text[1:], every_state=False, context=context
        )
        return forced.logits
    state, rows = layout.zero_state(1), []
    for start in range(0, len(text), chunk):
        ids = text[None, start : start + chunk]
        out = backend.run({layout.tokens.name: layout.token_feed(ids), **state, **context})
        state = layout.state_after(out)
        rows.append(
            np.asarray(out[layout.logits.name]).reshape(-1, out[layout.logits.name].shape[-1])
        )
    return np.concatenate(rows)


def _perplexity(logits: np.ndarray, text: np.ndarray) -> float:
    """exp(mean NLL) of text[1:] under logits[:-1]: (N, V) float, (N,) ids."""
    z = logits[:-1].astype(np.float64)
    z -= z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(np.exp(-np.take_along_axis(logp, text[1:, None], -1).mean()))


# --- speed ------------------------------------------------------------------------------------------


def measure_speed(
    bundle: Path,
    manifest: Manifest,
    variant_graph: Path,
    split: Split | None,
    optimization: str,
    variant_step: Path | None = None,
) -> dict[str, Any]:
    read = Bundle(Path(bundle), manifest)
    contract = read.contract
    # fp32 as the runtime runs it: stepping on the one-token graph where the bundle has one
    fp32 = OrtBackend(read.graph, contract, threads=1, step_graph=read.step_graph)
    variant = OrtBackend(
        variant_graph, contract, threads=1, optimization=optimization, step_graph=variant_step
    )
    return speed(contract, fp32, variant, split)


def speed(
    contract: IOContract, fp32: Backend, variant: Backend, split: Split | None
) -> dict[str, Any]:
    """Median latency at batch 1 (language models: the bound greedy step the runtime uses), 1 thread,
    fp32 and variant interleaved in the same process so machine noise hits both alike."""
    if contract.state and contract.token_input:  # the runtime's own step: bound, greedy
        calls, path = [fp32.greedy_step(1), variant.greedy_step(1)], "one greedy token step"
    else:
        sizes = {d: 1 for t in contract.inputs for d in t.shape if isinstance(d, str)}
        feeds = contract.feeds(sizes, np.random.default_rng(0))
        if split is not None and split.text is None:
            feeds |= {k: v[:1] for k, v in split.test.items()}
        calls, path = [fp32.prepared(feeds), variant.prepared(feeds)], "one call"
    us = interleaved_medians({"fp32": calls[0], "variant": calls[1]}, SPEED_SECONDS)
    fp32_us, variant_us = us["fp32"], us["variant"]
    return {
        "path": path,
        "batch": 1,
        "threads": 1,
        "fp32_us": fp32_us,
        "variant_us": variant_us,
        "ratio": variant_us / fp32_us,
    }
