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

import edgekit


def infer_input(name: str, array: np.ndarray, binary: bool = True) -> Any:
    import tritonclient.http as http
    from tritonclient.utils import np_to_triton_dtype

    tensor = http.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def client(url: str) -> Any:
    import tritonclient.http as http

    return http.InferenceServerClient(url)


def check_outputs(url: str, model: str, bundle: Path, batch: int = 3, binary: bool = True) -> None:
    """The server's outputs for a batch of example inputs equal the bundle's, run locally."""
    local = edgekit.load(bundle)
    feeds = local.backend.contract.example(batch, 1, np.random.default_rng(1))
    want = local.backend.run(feeds)
    result = client(url).infer(model, [infer_input(n, a, binary) for n, a in feeds.items()])
    for name, value in want.items():
        np.testing.assert_allclose(result.as_numpy(name), value, rtol=1e-5, atol=1e-6)


def rollout(url: str, model: str, sequence_id: int, prompt: np.ndarray, steps: int) -> list[int]:
    """Greedy tokens after `prompt` (T,), one request per token through a server-side sequence."""
    c, tokens = client(url), []
    first = infer_input("tokens", prompt[None, :])
    result = c.infer(model, [first], sequence_id=sequence_id, sequence_start=True)
    for k in range(steps):
        token = int(result.as_numpy("logits")[0, -1].argmax())
        tokens.append(token)
        ids = infer_input("tokens", np.array([[token]], np.int64))
        last = k == steps - 1
        result = c.infer(model, [ids], sequence_id=sequence_id, sequence_end=last)
    return tokens


def check_rollout(url: str, model: str, bundle: Path, steps: int, sequence_id: int = 7) -> None:
    """Remote greedy generation equals the local Generator's, token for token."""
    g = edgekit.load(bundle)
    got = rollout(url, model, sequence_id, g.encode("the "), steps)
    text, want = "".join(g.vocab[t] for t in got), g.generate("the ", steps, temperature=0)
    assert text == want, f"{model}: remote {text!r} != local {want!r}"


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
            if edgekit.load(bundle).task == "generate":
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
