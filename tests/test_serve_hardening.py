"""`edgekit serve` against malformed and oversized requests: every one is a 4xx with one JSON error
naming the field, what it got and what it expects; none reaches Python's exceptions as a 500, and a
body over the limit is refused while it is read, chunked or not. Loopback only, bounded."""

from __future__ import annotations

import http.client
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_serve import start_server

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("starlette", "uvicorn", "tritonclient")),
    reason="needs the serve extra and tritonclient[http] (both in the dev extra)",
)


@pytest.fixture(scope="module")
def served(tiny_bundles: dict[str, Path]) -> Iterator[str]:
    bundles = [(n, tiny_bundles[n]) for n in ("linear", "charlm")]
    url, _, server = start_server(bundles, max_batch=8)
    yield url
    server.should_exit = True


def post(
    url: str, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def features(**overrides: Any) -> dict[str, Any]:
    tensor = {"name": "features", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}
    return {"inputs": [{**tensor, **overrides}]}


MALFORMED = [
    ("deep nesting", b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nests too deeply"),
    ("thousands of digits", b'{"inputs": [], "id": ' + b"9" * 5000 + b"}", "JSON cannot give"),
    ("an int beyond int64", json.dumps(features(datatype="INT64", data=[2**70, 1])).encode(),
     "data is not INT64"),
    ("a shape overflowing int64", json.dumps(features(shape=[2**40, 2**40])).encode(),
     "more than"),
    ("a boolean dim", json.dumps(features(shape=[True, 2])).encode(), "non-negative integers"),
    ("outputs not a list", json.dumps({**features(), "outputs": "features"}).encode(),
     '"outputs" must be a list of JSON objects'),
    ("parameters not an object", json.dumps({**features(), "parameters": [1]}).encode(),
     '"parameters" must be a JSON object'),
    ("binary_data_output not a flag",
     json.dumps({**features(), "parameters": {"binary_data_output": "yes"}}).encode(),
     "binary_data_output must be true or false"),
    ("a negative binary_data_size",
     json.dumps(features(parameters={"binary_data_size": -8}), ).encode(), "binary_data_size"),
    ("a fractional binary_data_size",
     json.dumps(features(parameters={"binary_data_size": 7.5})).encode(), "binary_data_size"),
    ("NaN in a tensor", b'{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 2], '
     b'"data": [NaN, 1]}]}', "not a JSON number"),
    ("1e39 in FP32", json.dumps(features(data=[1e39, 1.0])).encode(), "must be finite"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "body", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_infer_request_is_a_400_naming_the_problem(
    served: str, what: str, body: bytes, message: str
) -> None:
    status, doc = post(served, "/v2/models/linear/infer", body)
    assert status == 400, (what, doc)
    assert set(doc) == {"error"} and message in doc["error"], (what, doc)


GENERATE = [
    ({"temperature": "hot"}, "temperature must be a finite number"),
    ({"temperature": True}, "temperature must be a finite number"),
    ({"top_k": 2.5}, "top_k must be an integer"),
    ({"top_p": "0.9"}, "top_p must be a finite number"),
    ({"seed": -1}, "seed must be an integer"),
    ({"stop": [1, 2]}, "stop must be a string or a list of strings"),
    ({"max_tokens": 10**12}, "max_tokens must be an integer"),
]


@pytest.mark.parametrize(("params", "message"), GENERATE, ids=[str(p) for p, _ in GENERATE])
def test_generate_parameters_of_the_wrong_type_are_400s(
    served: str, params: dict[str, Any], message: str
) -> None:
    body = json.dumps({"text_input": "the ", "parameters": params}).encode()
    status, doc = post(served, "/v2/models/charlm/generate", body)
    assert status == 400 and message in doc["error"], doc


def test_a_sequence_flag_must_be_a_boolean(served: str) -> None:
    tokens = {"name": "tokens", "datatype": "INT64", "shape": [1, 1], "data": [1]}
    body = {"inputs": [tokens], "parameters": {"sequence_id": 3, "sequence_start": "yes"}}
    status, doc = post(served, "/v2/models/charlm/infer", json.dumps(body).encode())
    assert status == 400 and "sequence_start must be true or false" in doc["error"]


def test_bodies_over_the_limit_are_413s_declared_or_chunked(
    served: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgekit.serve.app as app_module

    monkeypatch.setattr(app_module, "MAX_BODY", 4096)  # read at each request
    big = json.dumps(features(shape=[1, 2000], data=[1.0] * 2000)).encode()
    status, doc = post(served, "/v2/models/linear/infer", big)
    assert status == 413 and "more than 4096" in doc["error"]
    host, port = served.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:  # no Content-Length: the limit holds while reading
        conn.request("POST", "/v2/models/linear/infer", body=iter([big[:3000], big[3000:]]),
                     encode_chunked=True)  # fmt: skip
        response = conn.getresponse()
        assert response.status == 413 and "more than 4096" in json.loads(response.read())["error"]
    finally:
        conn.close()
