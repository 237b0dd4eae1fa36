"""Repositories from `edgekit triton`, loaded by a real Triton Inference Server and replayed through
it with the unmodified tritonclient: stateless outputs equal the runtime's, and a 200-step greedy
rollout through Triton's implicit sequence state equals the local one, for every zoo bundle, every
recurrent zoo cell and the user-module layouts (batch-first, time-major, several state pairs,
integer and float inputs).

Needs EDGEKIT_TRITONSERVER: the path of a `tritonserver` with the onnxruntime backend (NVIDIA's
container has /opt/tritonserver/bin/tritonserver); EDGEKIT_TRITON_BACKENDS names its backend
directory when it is not the server's default. `.ci/run` sets both up from ../shared/triton.
Loopback only; the server is started once for the module and stopped after it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from edgekit.bundle.io import IOContract
from tests.conftest import train_tiny
from tests.remote_checks import check_outputs, check_rollout
from tests.user_modules import models as m

TRITONSERVER = os.environ.get("EDGEKIT_TRITONSERVER", "")
pytestmark = pytest.mark.skipif(
    not TRITONSERVER,
    reason="EDGEKIT_TRITONSERVER is not set (the path of a tritonserver with the onnxruntime "
    "backend; .ci/run sets one up from ../shared/triton)",
)
START_S = 90  # the server loads every model before it answers
STEPS = 200
CELLS = ("rnn", "gru", "scratch-rnn", "scratch-lstm")  # lstm: the tiny zoo's own charlm
RECURRENT = ["zoo-charlm", *(f"charlm-{c}" for c in CELLS), "user-lstm", "user-time-major",
             "user-gru-dict"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _user_bundles(root: Path) -> dict[str, Path]:
    """The user-module layouts: batch-first with two state pairs, time-major with nested state,
    a dict output, integer inputs with a mask, float inputs in a dict."""
    import edgekit

    torch.manual_seed(0)
    h = torch.zeros(2, 2, m.H)
    bundles = {}
    bundles["user-lstm"] = edgekit.export(
        m.LSTMLM(), (torch.zeros(2, 3, dtype=torch.long), h, h), root / "user-lstm",
        input_names=["tokens", "state_in.h", "state_in.c"],
        output_names=["logits", "state_out.h", "state_out.c"],
        dynamic_axes={"tokens": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"},
                      **{n: {1: "batch"} for n in ("state_in.h", "state_in.c", "state_out.h",
                                                    "state_out.c")}},
        state_pairs=[("state_in.h", "state_out.h"), ("state_in.c", "state_out.c")],
        task="generate", vocab=m.CHARS, steps=0,
    ).path  # fmt: skip
    z = torch.zeros(1, 2, m.H)
    bundles["user-time-major"] = edgekit.export(
        m.TimeMajorLSTMLM(), (torch.zeros(3, 2, dtype=torch.long), (z, z)), root / "user-tm",
        input_names=["tokens", "h", "c"],
        dynamic_axes={"tokens": {0: "time", 1: "batch"}, "output.0": {0: "time", 1: "batch"},
                      "h": {1: "batch"}, "c": {1: "batch"},
                      "output.1.0": {1: "batch"}, "output.1.1": {1: "batch"}},
        state_pairs=[("h", "output.1.0"), ("c", "output.1.1")], steps=0,
    ).path  # fmt: skip
    bundles["user-gru-dict"] = edgekit.export(
        m.GRULM(), (torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 2, m.H)), root / "user-gru",
        input_names=["tokens", "state_in.h"],
        dynamic_axes={"tokens": {0: "batch", 1: "time"}, "output.logits": {0: "batch", 1: "time"},
                      "state_in.h": {1: "batch"}, "output.h": {1: "batch"}},
        state_pairs=[("state_in.h", "output.h")], task="generate", steps=0,
    ).path  # fmt: skip
    ids = torch.randint(1, 20, (2, 6))
    bundles["user-ints"] = edgekit.export(
        m.TransformerClassifier().eval(), (ids, torch.ones(2, 6, dtype=torch.long)),
        root / "user-ints", input_names=["ids", "attention_mask"], output_names=["logits"],
        dynamic_axes={"ids": {0: "batch", 1: "time"}, "attention_mask": {0: "batch", 1: "time"},
                      "logits": {0: "batch"}},
        int_ranges={"attention_mask": (0, 2)}, steps=0,
    ).path  # fmt: skip
    bundles["user-floats"] = edgekit.export(
        m.TwoHeads(), ({"a": torch.randn(2, 4), "b": torch.randn(2, 6)},), root / "user-floats",
        dynamic_axes={n: {0: "batch"} for n in ("input.0.a", "input.0.b", "output.0",
                                                  "output.1.0", "output.1.1")}, steps=0,
    ).path  # fmt: skip
    return bundles


@pytest.fixture(scope="module")
def bundles(
    tiny_bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    from edgekit.exporters import bundle_from_checkpoint

    root = tmp_path_factory.mktemp("triton-bundles")
    found = {f"zoo-{name}": path for name, path in tiny_bundles.items()}
    for cell in CELLS:
        ckpt = train_tiny("charlm", root / f"ckpt-{cell}", cell=cell, layers=2, hidden=12)
        found[f"charlm-{cell}"] = bundle_from_checkpoint(
            ckpt.path,  # type: ignore[attr-defined]
            root / f"charlm-{cell}",
            steps=0,
        ).path
    return found | _user_bundles(root)


@pytest.fixture(scope="module")
def triton(bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Triton serving one repository per bundle; yields its HOST:PORT."""
    from edgekit.exporters.triton_repository import write_repository

    root = tmp_path_factory.mktemp("triton-repos")
    repos = []
    for name, bundle in bundles.items():
        # recurrent bundles twice: batched sequences (a batch-first copy of the graph), and the
        # bundle's own graph, one stream per call (the default)
        write_repository(bundle, root / name, name=name, batch_sequences=True)
        repos.append(f"--model-repository={root / name}")
        if name in RECURRENT:
            write_repository(bundle, root / f"{name}-one", name=f"{name}-one")
            repos.append(f"--model-repository={root / name}-one")
    port = _free_port()
    backends = os.environ.get("EDGEKIT_TRITON_BACKENDS")
    log = root / "triton.log"
    command = [TRITONSERVER, *repos, "--http-address=127.0.0.1", f"--http-port={port}",
               "--allow-grpc=false", "--allow-metrics=false", "--exit-on-error=false"]  # fmt: skip
    if backends:
        command.append(f"--backend-directory={backends}")
    with open(log, "wb") as out:
        server = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_S
        url = f"127.0.0.1:{port}"
        while not _ready(url, next(iter(bundles))):  # serving, models loaded
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Triton did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _ready(url: str, name: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{url}/v2/models/{name}/ready", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def test_triton_loads_the_repository_of_every_bundle(triton: str, bundles: dict[str, Path]):
    names = [*bundles, *(f"{n}-one" for n in RECURRENT)]
    refused = [name for name in names if not _ready(triton, name)]
    assert not refused, f"Triton did not load {refused}"


@pytest.mark.parametrize("name", ["zoo-linear", "zoo-logistic", "zoo-lenet", "zoo-rowlstm",
                                  "zoo-cnn", "user-ints", "user-floats"])  # fmt: skip
def test_stateless_outputs_through_triton_equal_the_runtimes(
    triton: str, bundles: dict[str, Path], name: str
):
    check_outputs(triton, name, bundles[name])


@pytest.mark.parametrize("config", ["batched", "one stream"])
@pytest.mark.parametrize("name", RECURRENT)
def test_a_greedy_rollout_through_tritons_sequence_state_equals_the_local_one(
    triton: str, bundles: dict[str, Path], name: str, config: str
):
    from edgekit.bundle import Bundle
    from edgekit.serve.triton import batch_first_spec

    contract = Bundle.read(bundles[name]).manifest.contract
    if config == "batched":  # the repository's graph takes every tensor batch first
        layout = IOContract(
            [batch_first_spec(t, contract) for t in contract.inputs],
            [batch_first_spec(t, contract) for t in contract.outputs],
            contract.state, contract.token_input, contract.vocab_size, dict(contract.axes),
        ).layout()  # fmt: skip
        check_rollout(triton, name, bundles[name], STEPS, 1000 + len(name), layout)
    else:
        check_rollout(triton, f"{name}-one", bundles[name], STEPS, 2000 + len(name))


@pytest.mark.skipif(
    not os.environ.get("EDGEKIT_PERF_ANALYZER"),
    reason="EDGEKIT_PERF_ANALYZER is not set (Triton's perf_analyzer; .ci/run sets it up)",
)
def test_triton_batches_concurrent_sequences_of_the_batched_repository(triton: str):
    """16 concurrent sequences under perf_analyzer: Triton's own counters show calls shared
    on the batched repository, and one call per request on the one-stream one.

    The counters are read from Triton's statistics endpoint once the load has ended: the
    figures perf_analyzer prints are differences of snapshots taken with requests in flight,
    so its inference and execution counts can disagree by a request in either repository."""
    counts = {}
    for name, shape in (("zoo-charlm", "tokens:1"), ("zoo-charlm-one", "tokens:1,1")):
        before = _settled_counts(triton, name)
        command = [os.environ["EDGEKIT_PERF_ANALYZER"], "-m", name, "-u", triton, "-i", "http",
                   "--concurrency-range", "16:16", "--measurement-interval", "500",
                   "--max-trials", "6", "--stability-percentage", "1000", "--shape", shape,
                   "--input-data", "zero", "--sequence-length", "20",
                   "--sequence-id-range", "1:64"]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        after = _settled_counts(triton, name)
        counts[name] = (after[0] - before[0], after[1] - before[1])
        assert counts[name][0] > 0, (name, counts)
    assert counts["zoo-charlm"][1] < counts["zoo-charlm"][0], counts
    assert counts["zoo-charlm-one"][1] == counts["zoo-charlm-one"][0], counts


def _settled_counts(url: str, name: str) -> tuple[int, int]:
    """(inference count, execution count) from Triton's statistics, read until two reads agree
    (the server books a request just after answering it); at most 50 reads, 0.1 s apart."""
    last = None
    for _ in range(50):
        with urllib.request.urlopen(f"http://{url}/v2/models/{name}/stats", timeout=5) as r:
            stats = json.load(r)["model_stats"][0]
        now = (int(stats["inference_count"]), int(stats["execution_count"]))
        if now == last:
            return now
        last = now
        time.sleep(0.1)
    raise AssertionError(f"Triton's counters for {name} kept moving after the load ended: {last}")
