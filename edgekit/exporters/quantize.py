"""`edgekit quantize BUNDLE --int8`: an int8 variant of a recurrent bundle, kept only if it passes.

The recipe is ONNX Runtime's dynamic quantization (weights int8, per channel by default; LSTM becomes
DynamicQuantizeLSTM, MatMul becomes MatMulInteger; a GRU or RNN op stays in float, which the record
says). The derived graph is first opened in a subprocess, so an ONNX Runtime crash is an error, not
a dead process. Then the gates, against torch's golden records in the bundle:

- next-token top-1 agreement with torch: >= 99%, both over the golden greedy rollout (teacher-forced)
  and over the held-out text stored with the golden records;
- perplexity on that held-out text: within 1% of torch's, either way;
- the first step where the variant's own greedy text leaves torch's (reported).

A variant that misses a gate is refused (exit 1) unless `--force`. It is written atomically as
`model.int8.onnx` and recorded in the manifest with its recipe, its parent graph's hash, the ops
quantized and left in float, the gates measured, and its own tolerances for `edgekit check`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import CheckFailed, InputError
from edgekit.files import sha256_file
from edgekit.iospec import IOContract
from edgekit.manifest import read_manifest, write_manifest
from edgekit.runtimes.layout import Layout
from edgekit.runtimes.onnxruntime import OrtBackend

VARIANT = "model.int8.onnx"
MIN_AGREEMENT = 0.99  # next-token top-1 agreement with torch
MAX_PERPLEXITY_DELTA = 0.01  # relative


def _validate_in_subprocess(graph: Path) -> None:
    code = (
        "import sys, onnxruntime as ort; "
        "ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(graph)], capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise CheckFailed(
            f"ONNX Runtime cannot open the int8 graph (checked in a subprocess): {tail}"
        )


def _op_counts(graph: Path) -> Counter[str]:
    import onnx

    return Counter(n.op_type for n in onnx.load(str(graph), load_external_data=False).graph.node)


def _softmax_logp(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z -= z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def measure_gates(bundle: Path, manifest: dict[str, Any], graph: Path) -> dict[str, Any]:
    """Agreement, perplexity and greedy divergence of `graph` against the bundle's golden records."""
    contract = IOContract.from_manifest(manifest)
    layout = Layout.of(contract)
    golden = manifest["golden"]
    with np.load(bundle / golden["file"], allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    variant = OrtBackend(graph, contract)
    prompt, tokens, logits = (arrays[f"rollout/{k}"] for k in ("prompt", "tokens", "logits"))
    state = layout.zero_state(1)
    agree, steps = 0, 0
    for step, ids in enumerate([prompt, *(np.array([[t]], np.int64) for t in tokens)]):
        out = variant.run({layout.tokens.name: layout.token_feed(ids), **state})
        state = layout.state_after(out)
        agree += int(
            layout.last_logits(out[layout.logits.name])[0].argmax() == logits[step].argmax()
        )
        steps += 1
    # free-running: the variant follows its own greedy choices
    state, ids, divergence = layout.zero_state(1), prompt, None
    for step, want in enumerate(tokens):
        out = variant.run({layout.tokens.name: layout.token_feed(ids), **state})
        state = layout.state_after(out)
        token = int(layout.last_logits(out[layout.logits.name])[0].argmax())
        if token != int(want):
            divergence = step
            break
        ids = np.array([[token]], np.int64)
    gates: dict[str, Any] = {
        "top1_agreement": agree / steps,
        "first_greedy_divergence": divergence,
        "rollout_steps": len(tokens),
    }
    text_case = next(
        (c for c in golden["cases"] if "seed" not in c and c["case"].startswith("real text")), None
    )
    if text_case is not None:
        key = text_case["key"]
        feeds = {k.split("/in/")[1]: v for k, v in arrays.items() if k.startswith(f"{key}/in/")}
        ref = arrays[f"{key}/out/{layout.logits.name}"]
        got = variant.run(feeds)[layout.logits.name]
        ids = feeds[layout.tokens.name]  # (1, T) held-out text
        targets = ids[:, 1:]

        def perplexity(z: np.ndarray) -> float:
            logp = _softmax_logp(z[:, :-1])
            return float(np.exp(-np.take_along_axis(logp, targets[..., None], -1).mean()))

        gates["perplexity_torch"] = perplexity(ref)
        gates["perplexity_int8"] = perplexity(got)
        gates["perplexity_delta"] = gates["perplexity_int8"] / gates["perplexity_torch"] - 1
        # next-character agreement on real text: a greedy rollout repeats itself, real text does not
        same = ref.argmax(-1) == got.argmax(-1)  # (1, T)
        gates["top1_agreement_text"] = float(same.mean())
    agreement = min(gates["top1_agreement"], gates.get("top1_agreement_text", 1.0))
    gates["passed"] = agreement >= MIN_AGREEMENT and (
        abs(gates.get("perplexity_delta", 0.0)) <= MAX_PERPLEXITY_DELTA
    )
    return gates


def quantize_bundle(
    bundle: str | Path, per_channel: bool = True, force: bool = False
) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    if manifest["task"] != "generate" or not manifest.get("golden", {}).get("rollout"):
        raise InputError(
            f"{bundle} is a {manifest['task']} bundle; int8 variants are built for recurrent "
            "generation bundles with golden records (re-export older bundles first)"
        )
    existing = [v for v in manifest.get("variants", []) if v.get("file") == VARIANT]
    if existing and not force:
        raise InputError(f"{bundle / VARIANT} already exists; pass --force to rebuild it")
    parent = bundle / manifest["graph"]
    tmp = bundle / f".{VARIANT}.tmp-{os.getpid()}"
    try:
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # the quantizer's advice to pre-process CNNs
        try:
            quantize_dynamic(parent, tmp, per_channel=per_channel, weight_type=QuantType.QInt8)
        finally:
            logging.getLogger().setLevel(quiet)
        _validate_in_subprocess(tmp)
        gates = measure_gates(bundle, manifest, tmp)
        if not gates["passed"] and not force:
            raise CheckFailed(
                "the int8 variant misses its gates; nothing written: "
                f"top-1 agreement {gates['top1_agreement']:.4f} on the rollout and "
                f"{gates.get('top1_agreement_text', 1.0):.4f} on held-out text (>= {MIN_AGREEMENT}), "
                f"perplexity delta {gates.get('perplexity_delta', 0.0):+.4f} (<= {MAX_PERPLEXITY_DELTA})"
                + ("" if per_channel else "; per-channel weights usually pass: drop --per-tensor")
            )
        before, after = _op_counts(parent), _op_counts(tmp)
        os.replace(tmp, bundle / VARIANT)
    finally:
        if tmp.exists():
            tmp.unlink()
    record = {
        "precision": "int8",
        "file": VARIANT,
        "parent_sha256": sha256_file(parent),
        "recipe": {
            "mode": "dynamic",
            "per_channel": per_channel,
            "weights": "int8",
            "tool": "onnxruntime.quantization",
        },
        "quantized_ops": {op: n for op, n in after.items() if op not in before},
        "float_ops": sorted(op for op in ("GRU", "RNN", "LSTM") if after.get(op)),
        "gates": gates,
        "bytes_ratio": (bundle / VARIANT).stat().st_size / parent.stat().st_size,
        # replaying golden records on an int8 graph: logits move by ~1e-2, so near ties may flip
        "tolerance": {"atol": 5e-2, "rtol": 5e-2},
    }
    manifest["variants"] = [
        *(v for v in manifest.get("variants", []) if v.get("file") != VARIANT),
        record,
    ]
    write_manifest(bundle, manifest)
    return record
