"""Growing state: a causal self-attention decoder whose KV cache grows by each call's length
(present = concat(past, new)) exports with `max_length`, starts from an empty cache, and generates
text equal to a torch greedy loop with its own cache for 200 tokens through `generate`, a session,
`generate_batch` (equal prompt lengths) and `edgekit serve`; `edgekit check` replays it, and a
stream past max_length is one clear error."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import edgekit
from edgekit.errors import InputError

CHARS = list("abcdefghijklmnop .")
D, HEADS, MAX = 16, 2, 256


class CachedDecoder(nn.Module):
    """tokens (B, T), past_k / past_v (B, heads, P, D/heads) -> logits (B, T, V), present_k /
    present_v (B, heads, P + T, D/heads): one causal self-attention block over a KV cache."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(len(CHARS), D), nn.Embedding(MAX, D)
        self.qkv, self.out = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.head = nn.Linear(D, len(CHARS))

    def forward(self, tokens, past_k, past_v):
        b, t = tokens.shape
        positions = torch.arange(t) + past_k.shape[2]  # absolute: after what the cache holds
        x = self.embed(tokens) + self.pos(positions)
        q, k, v = self.qkv(x).view(b, t, 3, HEADS, D // HEADS).permute(2, 0, 3, 1, 4)
        k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(D // HEADS)  # (B, heads, T, P + T)
        seen = torch.arange(k.shape[2])[None, :] <= positions[:, None]  # causal
        y = (scores.masked_fill(~seen, float("-inf")).softmax(-1) @ v).transpose(1, 2)
        return self.head(x + self.out(y.reshape(b, t, D))) * 3, k, v


def torch_greedy(module: nn.Module, prompt: str, steps: int) -> str:
    """Torch's own loop: its cache grows from empty, one token per call."""
    ids = torch.tensor([[CHARS.index(c) for c in prompt]])
    empty = torch.zeros(1, HEADS, 0, D // HEADS)
    out = []
    with torch.no_grad():
        logits, k, v = module(ids, empty, empty)
        for _ in range(steps):
            token = logits[0, -1].argmax()
            out.append(CHARS[int(token)])
            logits, k, v = module(token.view(1, 1), k, v)
    return "".join(out)


@pytest.fixture(scope="module")
def decoder(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    module = CachedDecoder().eval()
    past = torch.zeros(2, HEADS, 4, D // HEADS)
    bundle, _ = edgekit.export(
        module, (torch.zeros(2, 3, dtype=torch.long), past, past),
        tmp_path_factory.mktemp("kv") / "decoder",
        input_names=["tokens", "past_k", "past_v"], output_names=["logits", "present_k", "present_v"],
        dynamic_axes={"tokens": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"},
                      **{n: {0: "batch", 2: "past"} for n in ("past_k", "past_v")},
                      **{n: {0: "batch", 2: "total"} for n in ("present_k", "present_v")}},
        state_pairs=[("past_k", "present_k"), ("past_v", "present_v")], max_length=MAX,
        task="generate", vocab=CHARS,
    )  # fmt: skip
    return module, bundle


def test_the_manifest_records_the_growth_and_the_cache_starts_empty(decoder) -> None:
    _, bundle = decoder
    g = edgekit.load(bundle)
    pairs = g.manifest.contract.state
    assert [(p.grows, p.max_length) for p in pairs] == [("past", MAX), ("past", MAX)]
    session = g.session()
    assert session.state["past_k"].shape == (1, HEADS, 0, D // HEADS)  # empty
    session.feed("abc")
    assert session.state["past_k"].shape == (1, HEADS, 3, D // HEADS)


def test_generation_equals_torchs_cached_loop(decoder) -> None:
    module, bundle = decoder
    g = edgekit.load(bundle)
    want = torch_greedy(module, "abc", 200)
    assert g.generate("abc", 200, temperature=0) == want
    session = g.session()
    session.feed("abc")
    assert "".join(session.step(temperature=0) for _ in range(200)) == want
    prompts = ["abc", "dea", "ppp"]  # equal lengths: one batched call per step
    assert g.generate_batch(prompts, 200, temperature=0) == [
        torch_greedy(module, p, 200) for p in prompts
    ]


def test_a_saved_session_continues_exactly(decoder) -> None:
    _, bundle = decoder
    g = edgekit.load(bundle)
    first = g.session()
    first.feed("abc")
    head = "".join(first.step(temperature=0) for _ in range(10))
    saved = first.state
    tail = "".join(first.step(temperature=0) for _ in range(20))
    second = g.session()
    second.state = saved
    assert "".join(second.step(temperature=0) for _ in range(20)) == tail and head


def test_check_replays_the_cached_rollout(decoder) -> None:
    from typer.testing import CliRunner

    from edgekit.cli import app

    _, bundle = decoder
    result = CliRunner().invoke(app, ["check", str(bundle)])
    assert result.exit_code == 0, result.output


def test_past_max_length_is_one_clear_error(decoder) -> None:
    _, bundle = decoder
    g = edgekit.load(bundle)
    with pytest.raises(InputError, match=f"need {3 + MAX} positions; .* holds {MAX}"):
        g.generate("abc", MAX)  # 3 + 256 positions: refused before a token is computed
    session = g.session()
    session.feed("abc" * 85)  # 255 positions
    session.step(temperature=0)
    with pytest.raises(InputError, match=f"more than the {MAX} it was exported for"):
        session.step(temperature=0)
    with pytest.raises(InputError, match="batches prompts of equal length"):
        g.generate_batch(["abc", "de"], 5)


def test_edgekit_serve_keeps_each_sequences_cache(decoder) -> None:
    import http.client
    import json

    from tests.test_serve import start_server

    module, bundle = decoder
    want = torch_greedy(module, "abc", 200)
    url, _, server = start_server([("decoder", bundle)])
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        body = {"text_input": "abc", "parameters": {"max_tokens": 200, "temperature": 0}}
        conn.request("POST", "/v2/models/decoder/generate", json.dumps(body))
        assert json.loads(conn.getresponse().read())["text_output"] == want
        ids, got = [CHARS.index(c) for c in "abc"], []
        for step in range(200):
            tokens = {"name": "tokens", "datatype": "INT64", "shape": [1, len(ids)], "data": ids}
            control = {"sequence_id": 3, "sequence_start": step == 0, "sequence_end": step == 199}
            conn.request("POST", "/v2/models/decoder/infer",
                         json.dumps({"inputs": [tokens], "parameters": control}))  # fmt: skip
            out = json.loads(conn.getresponse().read())["outputs"][0]
            ids = [int(np.asarray(out["data"]).reshape(out["shape"])[0, -1].argmax())]
            got.append(CHARS[ids[0]])
        assert "".join(got) == want
    finally:
        conn.close()
        server.should_exit = True


def test_edgekit_triton_refuses_a_growing_state_in_one_line(decoder, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgekit.cli import app

    _, bundle = decoder
    result = CliRunner().invoke(app, ["triton", str(bundle), "--out", str(tmp_path / "repo")])
    assert result.exit_code == 2 and "grows from call to call" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "repo").exists()


def test_the_export_rollout_fits_in_max_length(tmp_path: Path) -> None:
    torch.manual_seed(0)
    past = torch.zeros(1, HEADS, 2, D // HEADS)
    _, manifest = edgekit.export(
        CachedDecoder(), (torch.zeros(1, 3, dtype=torch.long), past, past), tmp_path / "short",
        input_names=["tokens", "past_k", "past_v"], output_names=["logits", "present_k", "present_v"],
        dynamic_axes={"tokens": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"},
                      **{n: {0: "batch", 2: "past"} for n in ("past_k", "past_v")},
                      **{n: {0: "batch", 2: "total"} for n in ("present_k", "present_v")}},
        state_pairs=[("past_k", "present_k"), ("past_v", "present_v")], max_length=40,
        task="generate", vocab=CHARS,
    )  # fmt: skip
    rollout = manifest["parity"]["rollout"]
    assert manifest["golden"]["rollout"]["steps"] == rollout["steps"] < 40  # not the asked 200
    with pytest.raises(InputError, match=r"one name, one size; a growing state names its input's"):
        edgekit.export(
            CachedDecoder(), (torch.zeros(1, 3, dtype=torch.long), past, past), tmp_path / "same",
            input_names=["tokens", "past_k", "past_v"],
            output_names=["logits", "present_k", "present_v"],
            dynamic_axes={n: {2: "past"} for n in ("past_k", "past_v", "present_k", "present_v")},
            state_pairs=[("past_k", "present_k"), ("past_v", "present_v")], max_length=40,
        )  # fmt: skip
    with pytest.raises(InputError, match="declare max_length=N"):
        edgekit.export(
            CachedDecoder(), (torch.zeros(1, 3, dtype=torch.long), past, past), tmp_path / "no",
            input_names=["tokens", "past_k", "past_v"],
            output_names=["logits", "present_k", "present_v"],
            dynamic_axes={n: {2: "past"} for n in ("past_k", "past_v")}
            | {n: {2: "total"} for n in ("present_k", "present_v")},
            state_pairs=[("past_k", "present_k"), ("past_v", "present_v")], task="generic",
        )  # fmt: skip


def test_bench_times_its_steps_and_prefills(decoder) -> None:
    from edgekit.bench.core import run_bench
    from edgekit.bench.runner import Budget

    _, bundle = decoder
    doc = run_bench(
        bundle, ["ort-cpu"], [1, 2], Budget(warmup=2, iters=300, rounds=1), cold_start=False
    )
    cases = {r["case"] for r in doc["results"] if r["backend"] == "ort-cpu"}
    assert {"step bound B=1", "step host B=2", "prefill T=16"} <= cases
    assert doc["backends"]["numpy-floor"]["status"] == "skipped"


def test_quantize_gates_a_variant_on_the_golden_rollout(decoder, tmp_path: Path) -> None:
    import shutil

    from edgekit.exporters.quantize import quantize_bundle

    _, bundle = decoder
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    assert quantize_bundle(copy, "fp16")["gates"]["passed"]


def test_steps_write_the_cache_in_place_and_allocate_no_state_sized_array(decoder) -> None:
    """The cache lives in buffers sized once for max_length: ONNX Runtime writes each call's
    grown cache into them (what they hold after 100 steps is what stepping through the host
    returns), and the 100 steps trace less new memory (numpy reports its allocations to
    tracemalloc) than a copy of the k cache they end with."""
    import tracemalloc

    from edgekit.rollout import Rollout
    from edgekit.runtimes.growing import GrowingStepper
    from edgekit.runtimes.stepper import HostStepper

    _, bundle = decoder
    backend = edgekit.load(bundle).backend
    bound, host = backend.stepper(4), HostStepper(backend, 4)
    assert isinstance(bound, GrowingStepper)
    prompt = np.random.default_rng(0).integers(0, len(CHARS), (4, 100))
    rolls = []
    for stepper in (bound, host):
        stepper.prefill(prompt)
        rolls.append(Rollout(stepper))
        rolls[-1].advance()  # first calls out of the way
    tracemalloc.start()
    try:
        for _ in range(100):
            rolls[0].advance()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    for _ in range(100):
        rolls[1].advance()
    at_end = 2 * 4 * HEADS * 201 * (D // HEADS) * 4  # k and v, 4 streams, 201 positions, float32
    assert peak < at_end / 2, (peak, at_end)  # less than the k cache alone
    for name, want in host.get_state().items():
        assert want.shape[2] == 201
        np.testing.assert_allclose(bound.get_state()[name], want, rtol=1e-5, atol=1e-6)


def test_the_public_binding_calls_step_alike(decoder) -> None:
    """Where onnxruntime lacks the native binding the stepper prefers, it binds through the
    public IOBinding calls, with the same results."""
    from edgekit.rollout import trace

    _, bundle = decoder
    backend = edgekit.load(bundle).backend
    prompt = np.array([[CHARS.index(c) for c in "abc"]])
    public = backend.stepper(1)
    public.cpu = None  # as on an onnxruntime without a native device object
    public._bind_steps()
    want, got = trace(backend.stepper(1), prompt, 50), trace(public, prompt, 50)
    assert (want.tokens == got.tokens).all()
    np.testing.assert_allclose(got.logits, want.logits, rtol=1e-6, atol=1e-6)


def test_device_auto_steps_a_growing_state_on_onnx_runtime(decoder) -> None:
    from edgekit.runtimes.choice import cpu_backend

    module, bundle = decoder
    g = edgekit.load(bundle, device="auto")
    assert g.backend.name == "ort-cpu"  # OpenVINO does not step a growing state
    assert g.generate("abc", 30, temperature=0) == torch_greedy(module, "abc", 30)
    choice = cpu_backend(bundle, g.manifest, None, measure=True)
    assert choice["backend"] == "ort-cpu"
    assert any(reason in choice["why"] for reason in ("growing state", "not installed"))
