"""Checks of a v2 inference server against local bundles, with the unmodified tritonclient.http
client: tests/test_serve.py runs them against `edgekit serve`; pointed at Triton serving a
repository from `edgekit triton`, they check Triton the same way.

    python -m tests.remote_checks HOST:PORT NAME=BUNDLE [NAME=BUNDLE ...] [--steps 200]

A classifier or regressor must return what the bundle returns locally for the same batch; a
recurrent bundle must give the local Generator's greedy continuation when driven one token per
request through a server-side sequence. Exit 0 when every model passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np


def infer_input(name: str, array: np.ndarray, binary: bool = True) -> Any:
    import tritonclient.http as http
    from tritonclient.utils import np_to_triton_dtype

    tensor = http.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def client(url: str) -> Any:
    import tritonclient.http as http

    return http.InferenceServerClient(url)


def local_backend(bundle: Path) -> Any:
    """The bundle on ONNX Runtime here (any bundle: a generation bundle may have no vocabulary)."""
    from edgekit.bundle import Bundle
    from edgekit.runtimes.registry import open_backend

    return open_backend("ort-cpu", bundle, Bundle.read(bundle).manifest)


def check_outputs(url: str, model: str, bundle: Path, batch: int = 3, binary: bool = True) -> None:
    """The server's outputs for a batch of example inputs equal the bundle's, run locally."""
    local = local_backend(bundle)
    feeds = local.contract.example(batch, 1, np.random.default_rng(1))
    want = local.run(feeds)
    result = client(url).infer(model, [infer_input(n, a, binary) for n, a in feeds.items()])
    for name, value in want.items():
        np.testing.assert_allclose(result.as_numpy(name), value, rtol=1e-5, atol=1e-6)


def rollout(
    url: str, model: str, sequence_id: int, prompt: np.ndarray, steps: int, layout: Any = None
) -> list[int]:
    """Greedy tokens after `prompt` (T,), one request per token through a server-side sequence.
    `layout` (the bundle's) places batch and time in the tokens and logits; default (B, T)."""
    c, tokens = client(url), []

    def request(ids: np.ndarray, **flags: Any) -> int:  # ids (1, T) -> the greedy next token
        if layout is None:
            result = c.infer(model, [infer_input("tokens", ids)], sequence_id=sequence_id, **flags)
            return int(result.as_numpy("logits")[0, -1].argmax())
        feed = infer_input(layout.tokens.name, layout.token_feed(ids))
        result = c.infer(model, [feed], sequence_id=sequence_id, **flags)
        return int(layout.last_logits(result.as_numpy(layout.logits.name))[0].argmax())

    token = request(prompt[None, :], sequence_start=True)
    for k in range(steps):
        tokens.append(token)
        token = request(np.array([[token]], np.int64), sequence_end=k == steps - 1)
    return tokens


def check_rollout(
    url: str, model: str, bundle: Path, steps: int, sequence_id: int = 7, layout: Any = None
) -> None:
    """Remote greedy generation equals local greedy generation (the path the Generator takes),
    token for token, in whatever layout the bundle's tensors have (`layout`: the server's, where
    it differs from the bundle's)."""
    from edgekit.rollout import trace

    local = local_backend(bundle)
    layout = layout or local.layout
    vocab = bundle_vocabulary(bundle)
    prompt = vocab.encode("the ") if vocab and not vocab.missing("the ") else np.array([1, 2, 3])
    want = trace(local.stepper(1), prompt[None, :], steps, every_state=False).tokens.tolist()
    got = rollout(url, model, sequence_id, prompt, steps, layout)
    first = next((k for k, (a, b) in enumerate(zip(got, want, strict=True)) if a != b), None)
    assert first is None, f"{model}: remote greedy tokens leave the local ones at step {first}"


def bundle_vocabulary(bundle: Path) -> Any:
    from edgekit.bundle import Bundle

    return Bundle.read(bundle).manifest.vocabulary()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("models", nargs="+", help="NAME=BUNDLE")
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    failed = 0
    for spec in args.models:
        name, _, path = spec.partition("=")
        bundle = Path(path)
        try:
            if local_backend(bundle).contract.state:
                check_rollout(args.url, name, bundle, args.steps)
            else:
                check_outputs(args.url, name, bundle)
            print(f"{name}: ok")
        except Exception as exc:  # report every model, then exit 1
            failed += 1
            print(f"{name}: FAILED {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
