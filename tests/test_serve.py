"""`edgekit serve` end to end on 127.0.0.1, driven by the unmodified `tritonclient.http` client."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgekit
from tests.remote_checks import check_outputs, check_rollout, client, infer_input, rollout

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("starlette", "uvicorn", "tritonclient")),
    reason="needs the serve extra and tritonclient[http] (both in the dev extra)",
)


def start_server(bundles: list[tuple[str, Path]], **options: Any) -> tuple[str, Any, Any]:
    import uvicorn

    from edgekit.serve.app import create_app
    from edgekit.serve.connections import server_settings
    from edgekit.serve.models import ServeOptions

    app = create_app(bundles, ServeOptions(**options))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = server_settings(ServeOptions(**options))  # as `edgekit serve` runs uvicorn
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", **settings)
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    return f"127.0.0.1:{port}", app, server


@pytest.fixture(scope="module")
def served(tiny_bundles: dict[str, Path]) -> Iterator[tuple[str, Any]]:
    bundles = [(n, tiny_bundles[n]) for n in ("cnn", "linear", "charlm")]
    url, app, server = start_server(
        bundles, max_batch=8, max_wait_ms=20, max_sequences=32, sequence_timeout_s=1.0
    )
    yield url, app
    server.should_exit = True


def test_health_and_metadata(served: tuple[str, Any]) -> None:
    c = client(served[0])
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("cnn") and not c.is_model_ready("nope")
    meta = c.get_model_metadata("charlm")
    # a recurrent model shows its token input and logits; the state stays on the server
    assert [t["name"] for t in meta["inputs"]] == ["tokens"]
    assert meta["inputs"][0]["datatype"] == "INT64" and meta["inputs"][0]["shape"] == [-1, -1]
    assert [t["name"] for t in c.get_model_metadata("cnn")["outputs"]] == ["probability"]


@pytest.mark.parametrize("binary", [True, False])
def test_remote_outputs_equal_local(
    served: tuple[str, Any], tiny_bundles: dict, binary: bool
) -> None:
    check_outputs(served[0], "cnn", tiny_bundles["cnn"], binary=binary)
    check_outputs(served[0], "linear", tiny_bundles["linear"], binary=binary)


def test_remote_greedy_rollout_equals_the_local_generator(
    served: tuple[str, Any], tiny_bundles: dict
) -> None:
    check_rollout(served[0], "charlm", tiny_bundles["charlm"], 200, sequence_id=7)
    store = served[1].state.models["charlm"].sequences
    assert store.stats()["ended"] >= 1 and 7 not in store.live  # sequence_end freed it


def test_sixteen_concurrent_clients_lose_and_mix_nothing(
    served: tuple[str, Any], tiny_bundles: dict
) -> None:
    local = edgekit.load(tiny_bundles["cnn"])
    rng = np.random.default_rng(2)
    inputs = [local.backend.contract.example(1, 1, rng)["image"] for _ in range(64)]
    want = [local.backend.run({"image": x})["probability"] for x in inputs]
    batcher = served[1].state.models["cnn"].batcher
    before = (batcher.requests, batcher.calls)

    def one(i: int) -> np.ndarray:
        return (
            client(served[0])
            .infer("cnn", [infer_input("image", inputs[i])])
            .as_numpy("probability")
        )

    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(one, range(64)))
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    requests, calls = batcher.requests - before[0], batcher.calls - before[1]
    assert requests == 64 and calls < requests, "requests that arrive together share a call"


def test_sixteen_concurrent_sequences(served: tuple[str, Any], tiny_bundles: dict) -> None:
    g = edgekit.load(tiny_bundles["charlm"])
    prompts = ["the ", "a", "of the", "in", "and ", "to", "it ", "he"] * 2
    want = [g.generate(p, 30, temperature=0) for p in prompts]
    batcher = served[1].state.models["charlm"].batcher
    before = (batcher.requests, batcher.calls)
    with ThreadPoolExecutor(16) as pool:
        got = list(
            pool.map(
                lambda i: rollout(served[0], "charlm", 100 + i, g.encode(prompts[i]), 30), range(16)
            )
        )
    assert ["".join(g.vocab[t] for t in tokens) for tokens in got] == want
    requests, calls = batcher.requests - before[0], batcher.calls - before[1]
    assert requests == 16 * 31 and calls < requests, "steps of different sequences share calls"


def test_a_killed_clients_sequence_is_evicted(served: tuple[str, Any]) -> None:
    url, app = served
    store = app.state.models["charlm"].sequences
    script = (
        "import sys, time, numpy as np, tritonclient.http as h\n"
        "c = h.InferenceServerClient(sys.argv[1])\n"
        "x = h.InferInput('tokens', [1, 2], 'INT64'); x.set_data_from_numpy(np.zeros((1, 2), np.int64))\n"
        "c.infer('charlm', [x], sequence_id=999, sequence_start=True)\n"
        "print('started', flush=True); time.sleep(60)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, url], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
            assert 999 in store.live
        finally:
            proc.kill()  # no sequence_end will ever come
    evicted = store.evicted
    deadline = time.monotonic() + 10
    while 999 in store.live:
        assert time.monotonic() < deadline, "the dead client's sequence was never evicted"
        time.sleep(0.1)
    assert store.evicted > evicted


def _post(url: str, path: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://{url}{path}", body, headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v2/models/cnn/infer", b"{not json", 400, "not valid JSON"),
        ("/v2/models/nope/infer", b"{}", 404, "unknown model 'nope'"),
        ("/v2/models/cnn/infer", b'{"inputs": []}', 400, 'no "inputs"'),
        (
            "/v2/models/linear/infer",
            json.dumps(
                {
                    "inputs": [
                        {"name": "features", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}
                    ]
                }
            ).encode(),
            400,
            "dtype float64, expected float32",
        ),
        (
            "/v2/models/linear/infer",
            json.dumps(
                {
                    "inputs": [
                        {"name": "features", "shape": [2, 2], "datatype": "FP32", "data": [1, 2]}
                    ]
                }
            ).encode(),
            400,
            "2 values for shape [2, 2]",
        ),
        (
            "/v2/models/charlm/infer",
            json.dumps(
                {"inputs": [{"name": "tokens", "shape": [1, 1], "datatype": "INT64", "data": [0]}]}
            ).encode(),
            400,
            "give a sequence_id",
        ),
        (
            "/v2/models/charlm/infer",
            json.dumps(
                {
                    "parameters": {"sequence_id": 5},
                    "inputs": [
                        {"name": "tokens", "shape": [1, 1], "datatype": "INT64", "data": [0]}
                    ],
                }
            ).encode(),
            400,
            "sequence 5 is not live",
        ),
        (
            "/v2/models/charlm/infer",
            json.dumps(
                {
                    "parameters": {"sequence_id": 6, "sequence_start": True},
                    "inputs": [
                        {"name": "tokens", "shape": [1, 1], "datatype": "INT64", "data": [5000]}
                    ],
                }
            ).encode(),
            400,
            "tokens: values must be in [0, ",
        ),
        (
            "/v2/models/linear/infer",
            json.dumps(
                {
                    "inputs": [
                        {"name": "features", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}
                    ],
                    "outputs": [{"name": "nope"}],
                }
            ).encode(),
            400,
            "unknown outputs ['nope']",
        ),
        ("/v2/models/cnn/generate", b'{"text_input": "a"}', 400, "is a classify model"),
        (
            "/v2/models/charlm/generate",
            b'{"text_input": "\xe2\x82\xac"}',
            400,
            "not in the model's vocabulary",
        ),
    ],
)
def test_bad_requests_get_400_and_the_server_lives(
    served: tuple[str, Any], path: str, body: bytes, status: int, message: str
) -> None:
    code, payload = _post(served[0], path, body)
    assert code == status and message in payload["error"], payload
    assert client(served[0]).is_server_live()


def test_bad_binary_framing_gets_400(served: tuple[str, Any]) -> None:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "shape": [1, 2],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 8},
                }
            ]
        }
    ).encode()
    framing = {"Inference-Header-Content-Length": str(len(head))}
    code, payload = _post(served[0], "/v2/models/linear/infer", head + b"\0" * 4, framing)
    assert code == 400 and "binary_data_size 8" in payload["error"]
    code, payload = _post(
        served[0],
        "/v2/models/linear/infer",
        head,
        {**framing, "Inference-Header-Content-Length": "99999"},
    )
    assert code == 400 and "outside the body" in payload["error"]
    code, payload = _post(served[0], "/v2/models/linear/infer", head + b"\0" * 8, framing)
    assert code == 200 and payload["outputs"][0]["shape"][0] == 1


def test_requested_outputs_come_back_as_asked(served: tuple[str, Any], tiny_bundles: dict) -> None:
    """JSON data for an output asked without binary_data; the id echoes back."""
    local = edgekit.load(tiny_bundles["linear"])
    rows = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    want = local.backend.run({"features": rows})
    (name,) = want
    request = {
        "id": "r1",
        "inputs": [
            {"name": "features", "shape": [2, 2], "datatype": "FP32", "data": rows.ravel().tolist()}
        ],
        "outputs": [{"name": name, "parameters": {"binary_data": False}}],
    }
    code, payload = _post(served[0], "/v2/models/linear/infer", json.dumps(request).encode())
    assert code == 200 and payload["id"] == "r1" and payload["model_name"] == "linear"
    (out,) = payload["outputs"]
    got = np.array(out["data"], np.float32).reshape(out["shape"])
    np.testing.assert_allclose(got, want[name], rtol=1e-6)


def test_text_generation_and_its_stream(served: tuple[str, Any], tiny_bundles: dict) -> None:
    g = edgekit.load(tiny_bundles["charlm"])
    want = g.generate("the ", 40, temperature=0)
    request = json.dumps(
        {"text_input": "the ", "parameters": {"max_tokens": 40, "temperature": 0}}
    ).encode()
    code, payload = _post(served[0], "/v2/models/charlm/generate", request)
    assert code == 200 and payload["text_output"] == want
    stream = urllib.request.Request(
        f"http://{served[0]}/v2/models/charlm/generate_stream", request, method="POST"
    )
    with urllib.request.urlopen(stream, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [
            json.loads(line[5:])
            for line in response.read().decode().splitlines()
            if line.startswith("data:")
        ]
    assert "".join(e["text_output"] for e in events) == want
    assert len(events) == 41 and events[-1]["done"] is True


def _start_body(sid: int) -> bytes:
    return json.dumps(
        {
            "parameters": {"sequence_id": sid, "sequence_start": True},
            "inputs": [{"name": "tokens", "shape": [1, 1], "datatype": "INT64", "data": [0]}],
        }
    ).encode()


def test_a_full_server_refuses_new_sequences_with_429(tiny_bundles: dict) -> None:
    url, _, server = start_server([("charlm", tiny_bundles["charlm"])], max_sequences=2)
    try:
        assert _post(url, "/v2/models/charlm/infer", _start_body(1))[0] == 200
        assert _post(url, "/v2/models/charlm/infer", _start_body(2))[0] == 200
        code, payload = _post(url, "/v2/models/charlm/infer", _start_body(3))
        assert code == 429 and "2 sequences are live" in payload["error"]
        assert _post(url, "/v2/models/charlm/infer", _start_body(1))[0] == 200  # a restart fits
    finally:
        server.should_exit = True


def test_the_remote_checks_script_passes_here_and_fails_a_mismatch(
    served: tuple[str, Any], tiny_bundles: dict
) -> None:
    """The same checks, as the script one points at a Triton server."""
    root = Path(__file__).resolve().parents[1]
    base = [sys.executable, "-m", "tests.remote_checks", served[0]]
    ok = subprocess.run(
        [*base, f"cnn={tiny_bundles['cnn']}", f"charlm={tiny_bundles['charlm']}", "--steps", "30"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0 and "charlm: ok" in ok.stdout, ok.stdout + ok.stderr
    wrong = subprocess.run(  # the served cnn is not the lenet bundle
        [*base, f"cnn={tiny_bundles['lenet']}"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert wrong.returncode == 1 and "cnn: FAILED" in wrong.stdout


def test_serve_command_bad_input_is_one_line_exit_2(tiny_bundles: dict, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgekit.cli import app

    runner = CliRunner()
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    missing = runner.invoke(app, ["serve", str(tmp_path / "nope"), "--port", str(port)])
    assert missing.exit_code == 2 and "nope" in missing.output and "Traceback" not in missing.output
    assert "--port must be" in runner.invoke(app, ["serve", str(tmp_path), "--port", "0"]).output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = runner.invoke(app, ["serve", str(tiny_bundles["cnn"]), "--port", str(port)])
    assert taken.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in taken.output


def test_a_variant_is_served_with_precision(tiny_bundles: dict, tmp_path: Path) -> None:
    """--precision int8 serves the bundle's int8 variant; a missing one is a clear error."""
    import shutil

    from edgekit.errors import InputError
    from edgekit.exporters.quantize import quantize_bundle
    from edgekit.serve.app import create_app
    from edgekit.serve.models import ServeOptions

    bundle = tmp_path / "lenet"
    shutil.copytree(tiny_bundles["lenet"], bundle)
    with pytest.raises(InputError, match="no int8 variant"):
        create_app([("lenet", bundle)], ServeOptions(precision="int8"))
    quantize_bundle(bundle, "int8", force=True)  # tiny weights: kept although it may not pay
    url, app, server = start_server([("lenet", bundle)], precision="int8")
    try:
        assert app.state.models["lenet"].model.manifest["precision"] == "int8"
        local = edgekit.load(bundle, precision="int8")
        feeds = local.backend.contract.example(2, 1, np.random.default_rng(3))
        ((name, images),) = feeds.items()
        got = client(url).infer("lenet", [infer_input(name, images)])
        for out, want in local.backend.run(feeds).items():
            np.testing.assert_allclose(got.as_numpy(out), want, rtol=1e-5, atol=1e-6)
    finally:
        server.should_exit = True
