"""A full KV cache: generation that would pass max_length is refused before a token is computed
(when_full="error", the default) or ends there (when_full="stop", declared at export), through
`generate`, `generate_batch`, `stream` and `edgekit serve`, streamed or not; and a stream that
fails once it has started ends with one error event, never a broken connection."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest
import torch

import edgekit
from edgekit.errors import InputError
from tests.test_growing_state import CHARS, HEADS, CachedDecoder, D, torch_greedy
from tests.test_serve import start_server

MAX = 40


def export(out: Path, **declared) -> Path:
    torch.manual_seed(0)
    past = torch.zeros(2, HEADS, 4, D // HEADS)
    bundle, _ = edgekit.export(
        CachedDecoder().eval(), (torch.zeros(2, 3, dtype=torch.long), past, past), out,
        input_names=["tokens", "past_k", "past_v"], output_names=["logits", "present_k", "present_v"],
        dynamic_axes={"tokens": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"},
                      **{n: {0: "batch", 2: "past"} for n in ("past_k", "past_v")},
                      **{n: {0: "batch", 2: "total"} for n in ("present_k", "present_v")}},
        state_pairs=[("past_k", "present_k"), ("past_v", "present_v")], max_length=MAX,
        task="generate", vocab=CHARS, steps=20, **declared,
    )  # fmt: skip
    return Path(bundle)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("full")
    return {"error": export(root / "error"), "stop": export(root / "stop", when_full="stop")}


def reference() -> torch.nn.Module:
    torch.manual_seed(0)
    return CachedDecoder().eval()


def post(url: str, path: str, body: dict) -> tuple[int, bytes]:
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", path, json.dumps(body))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_the_default_refuses_before_it_starts(bundles) -> None:
    g = edgekit.load(bundles["error"])
    contract = g.manifest.contract
    assert (contract.max_positions, contract.when_full) == (MAX, "error")
    assert g.generate("abc", MAX - 3, temperature=0) == torch_greedy(reference(), "abc", MAX - 3)
    for call in (
        lambda: g.generate("abc", MAX - 2),
        lambda: next(iter(g.stream("abc", MAX))),
        lambda: g.generate_batch(["abc", "dea"], MAX),
    ):
        with pytest.raises(InputError, match=f"ask for at most {MAX - 3} new tokens"):
            call()
    with pytest.raises(InputError, match=f"the prompt has {MAX + 1} tokens, more than the {MAX}"):
        g.generate("a" * (MAX + 1), 1)


def test_when_full_stop_ends_the_text_at_max_length(bundles) -> None:
    g = edgekit.load(bundles["stop"])
    contract = g.manifest.contract
    assert (contract.max_positions, contract.when_full) == (MAX, "stop")
    assert {s.get("when_full") for s in g.manifest.to_json()["state"]} == {"stop"}
    want = torch_greedy(reference(), "abc", MAX - 3)
    assert g.generate("abc", 500, temperature=0) == want
    assert "".join(g.stream("abc", 500, temperature=0)) == want
    assert g.generate_batch(["abc", "abc"], 500, temperature=0) == [want, want]
    assert g.check().passed
    from typer.testing import CliRunner

    from edgekit.cli import app

    info = CliRunner().invoke(app, ["info", str(bundles["stop"])])
    assert "grows along 'past' up to 40 (when full: stop)" in info.output, info.output
    with pytest.raises(InputError, match="more than the 40 positions"):
        g.generate("a" * (MAX + 1), 1)


def test_edgekit_serve_says_the_same_streamed_or_not(bundles) -> None:
    want = torch_greedy(reference(), "abc", MAX - 3)
    url, _, server = start_server([("error", bundles["error"]), ("stop", bundles["stop"])])
    body = {"text_input": "abc", "parameters": {"max_tokens": 500, "temperature": 0}}
    try:
        for path in ("generate", "generate_stream"):
            status, text = post(url, f"/v2/models/error/{path}", body)
            assert status == 400 and b"ask for at most 37 new tokens" in text, text
        status, text = post(url, "/v2/models/stop/generate", body)
        assert status == 200 and json.loads(text)["text_output"] == want
        status, text = post(url, "/v2/models/stop/generate_stream", body)
        events = [json.loads(e[6:]) for e in text.decode().split("\n\n") if e]
        assert status == 200 and "".join(e["text_output"] for e in events) == want
        assert events[-1].get("done") is True
    finally:
        server.should_exit = True


def test_a_stream_that_fails_once_started_ends_with_one_error_event(bundles, monkeypatch) -> None:
    from edgekit.runtimes.generator import Generator

    def failing(self, prompt, options, stops, context=None):  # a backend failing mid-text
        yield from "abcdefghij" * 2
        raise RuntimeError("the device went away")

    monkeypatch.setattr(Generator, "_stream", failing)
    url, _, server = start_server([("stop", bundles["stop"])])
    try:
        body = {"text_input": "abc", "parameters": {"max_tokens": 30}}
        status, text = post(url, "/v2/models/stop/generate_stream", body)
    finally:
        server.should_exit = True
    events = [json.loads(e[6:]) for e in text.decode().split("\n\n") if e]
    assert status == 200 and len([e for e in events if "text_output" in e]) == 16  # 2 chunks
    assert events[-1] == {"error": "RuntimeError: the device went away"}


def test_when_full_is_checked_at_export(tmp_path: Path) -> None:
    with pytest.raises(
        InputError, match=r"when_full is 'slide'; expected one of \('error', 'stop'\)"
    ):
        export(tmp_path / "bad", when_full="slide")
    with pytest.raises(InputError, match="when_full goes with a growing state"):
        edgekit.export(
            torch.nn.GRU(4, 4, batch_first=True), (torch.zeros(1, 3, 4), torch.zeros(1, 1, 4)),
            tmp_path / "gru", state_pairs=[("input.1", "output.1")], when_full="stop",
        )  # fmt: skip
