"""`edgekit serve` as Triton's own tools see it: the model configuration route, statistics in
Triton's format with counters that count, the classification extension, max-batch refusals, JSON
errors on every route, and perf_analyzer driving it unmodified (stateless and as a sequence model).

perf_analyzer runs where EDGEKIT_PERF_ANALYZER names it (.ci/run sets it up from ../shared/triton);
everything else needs only tritonclient. Loopback only; every loop is bounded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.remote_checks import client, infer_input
from tests.test_serve import start_server

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("starlette", "uvicorn", "tritonclient")),
    reason="needs the serve extra and tritonclient[http] (both in the dev extra)",
)
PERF_ANALYZER = os.environ.get("EDGEKIT_PERF_ANALYZER", "")
MAX_BATCH = 8


@pytest.fixture(scope="module")
def served(tiny_bundles: dict[str, Path]) -> Iterator[str]:
    bundles = [(n, tiny_bundles[n]) for n in ("cnn", "lenet", "charlm")]
    url, _, server = start_server(bundles, max_batch=MAX_BATCH, sequence_timeout_s=5.0)
    yield url
    server.should_exit = True


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://{url}", timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    except OSError:  # not listening (yet)
        return 0, None


def test_the_config_route_is_what_edgekit_triton_writes(served: str, tiny_bundles: dict) -> None:
    from google.protobuf import json_format

    from edgekit.bundle import Bundle
    from edgekit.serve.triton import triton_config
    from tests.test_triton import triton_schema

    for name in ("cnn", "charlm"):
        status, got = _get(f"{served}/v2/models/{name}/config")
        contract = Bundle.read(tiny_bundles[name]).manifest.contract
        want, _ = triton_config(name, contract, "onnxruntime_onnx", MAX_BATCH)
        assert status == 200 and got == want
        json_format.ParseDict(got, triton_schema().ModelConfig())  # Triton's own schema
    assert _get(f"{served}/v2/models/cnn/versions/1/config")[0] == 200
    assert client(served).get_model_config("cnn")["max_batch_size"] == MAX_BATCH


def test_statistics_are_in_tritons_format_and_count(served: str) -> None:
    c = client(served)
    before = c.get_inference_statistics("lenet")["model_stats"][0]
    for rows in (1, 3):
        image = np.zeros((rows, 1, 28, 28), np.float32)
        c.infer("lenet", [infer_input("image", image)])
    after = c.get_inference_statistics("lenet")["model_stats"][0]
    success = after["inference_stats"]["success"]
    assert success["count"] - before["inference_stats"]["success"]["count"] == 2
    assert after["inference_count"] - before["inference_count"] == 4  # rows
    assert after["execution_count"] - before["execution_count"] == 2
    assert success["ns"] > 0 and after["inference_stats"]["compute_infer"]["ns"] > 0
    assert {b["batch_size"] for b in after["batch_stats"]} >= {1, 3}
    everything = c.get_inference_statistics()["model_stats"]
    assert {m["name"] for m in everything} == {"cnn", "lenet", "charlm"}


@pytest.mark.parametrize("binary", [True, False])
def test_classification_returns_score_index_label_bytes(
    served: str, tiny_bundles: dict, binary: bool
) -> None:
    import tritonclient.http as http

    import edgekit

    local = edgekit.load(tiny_bundles["lenet"])
    images = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    logits = local.backend.run({"image": images})["logits"]
    asked = http.InferRequestedOutput("logits", binary_data=binary, class_count=3)
    result = client(served).infer("lenet", [infer_input("image", images)], outputs=[asked])
    got = result.as_numpy("logits")
    assert got.shape == (2, 3)
    labels = local.manifest.labels
    for row, scores in zip(got, logits, strict=True):
        top = np.argsort(-scores, kind="stable")[:3]
        want = [f"{scores[i]:f}:{i}" + (f":{labels[i]}" if labels else "") for i in top]
        assert [v.decode() if isinstance(v, bytes) else v for v in row] == want


def test_a_batch_over_max_batch_is_a_400_naming_the_limit(served: str) -> None:
    from tritonclient.utils import InferenceServerException

    image = np.zeros((MAX_BATCH + 1, 1, 28, 28), np.float32)
    with pytest.raises(InferenceServerException, match="max_batch_size 8") as err:
        client(served).infer("lenet", [infer_input("image", image)])
    assert err.value.status() == "400"
    full = np.zeros((MAX_BATCH, 1, 28, 28), np.float32)
    assert (
        client(served).infer("lenet", [infer_input("image", full)]).as_numpy("logits").shape[0] == 8
    )


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nowhere", 404), ("GET", "/v2/models/cnn/nothing", 404), ("DELETE", "/v2", 405),
     ("GET", "/v2/models/ghost/config", 404), ("POST", "/v2/models/cnn/config", 405)],
)  # fmt: skip
def test_every_route_answers_errors_as_json(served: str, method: str, path: str, status: int):
    request = urllib.request.Request(f"http://{served}{path}", method=method, data=b"")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == status
    body = json.loads(err.value.read())
    assert set(body) == {"error"} and body["error"]


def _perf_analyzer(url: str, *args: str) -> str:
    """perf_analyzer's report, which must end with exit 0."""
    command = [PERF_ANALYZER, "-u", url, "-i", "http", "--measurement-interval", "500",
               "--concurrency-range", "1:4:3", "--max-trials", "6", "--stability-percentage", "1000",
               *args]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(
    not PERF_ANALYZER,
    reason="EDGEKIT_PERF_ANALYZER is not set (Triton's perf_analyzer; .ci/run sets it up from "
    "../shared/triton)",
)
def test_perf_analyzer_drives_the_server_unmodified(tiny_bundles: dict[str, Path]) -> None:
    """Against `edgekit serve` as users start it: its own process, the real command."""
    import socket
    import sys
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "edgekit", "serve", f"cnn={tiny_bundles['cnn']}",
               f"charlm={tiny_bundles['charlm']}", "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while _get(f"{url}/v2/health/ready")[0] != 200:
            assert server.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        stateless = _perf_analyzer(url, "-m", "cnn")
        sequences = _perf_analyzer(
            url, "-m", "charlm", "--shape", "tokens:1,1", "--input-data", "zero",
            "--sequence-length", "20", "--sequence-id-range", "1:64",
        )  # fmt: skip
    finally:
        server.terminate()
        server.communicate(timeout=30)
    for report in (stateless, sequences):
        assert "Concurrency: 4, throughput:" in report
        counts = [int(line.split(":")[1]) for line in report.splitlines()
                  if "Successful request count" in line]  # fmt: skip
        assert counts and all(n > 0 for n in counts)
    assert "Sequence count" in sequences
