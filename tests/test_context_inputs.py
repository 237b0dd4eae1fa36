"""Context inputs: a seq2seq GRU decoder that attends over its encoder's outputs at every step
exports with `context=["encoder_out"]`, and generates text equal to a torch greedy loop for 200
tokens through `generate`, a session and `generate_batch`; `edgekit check` replays its rollout
with the context the golden records kept. A decoder in the shape of the PyTorch seq2seq
tutorial's (its hidden state the attention query) cannot take a prompt in one call: export finds
that on torch and exports its step alone, with the same results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import edgekit
from edgekit.errors import InputError
from tests.random_weights import spread

CHARS = list("abcdefghijklmnop .")
H, SOURCE = 16, 7


class AttentionDecoder(nn.Module):
    """tokens (B, T), h (1, B, H), encoder_out (B, S, H) -> logits (B, T, V), h.

    A GRU over the tokens, then (Luong) attention of each output over the encoder's outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(len(CHARS), H)
        self.gru = nn.GRU(H, H, batch_first=True)
        self.head = nn.Linear(2 * H, len(CHARS))

    def forward(self, tokens, h, encoder_out):
        y, h = self.gru(self.embed(tokens), h)  # (B, T, H)
        weights = torch.softmax(y @ encoder_out.transpose(1, 2), dim=-1)  # (B, T, S)
        return self.head(torch.cat([y, weights @ encoder_out], dim=-1)) * 4, h


DECLARED = dict(
    input_names=["tokens", "h", "encoder_out"], output_names=["logits", "h_out"],
    dynamic_axes={"tokens": {0: "batch", 1: "time"}, "h": {1: "batch"},
                  "encoder_out": {0: "batch", 1: "source"},
                  "logits": {0: "batch", 1: "time"}, "h_out": {1: "batch"}},
    state_pairs=[("h", "h_out")], context=["encoder_out"], task="generate", vocab=CHARS,
)  # fmt: skip


def torch_greedy(module: nn.Module, prompt: str, encoder_out: torch.Tensor, steps: int) -> str:
    ids = torch.tensor([[CHARS.index(c) for c in prompt]])
    h = torch.zeros(1, 1, H)
    out = []
    with torch.no_grad():
        logits, h = module(ids, h, encoder_out)
        for _ in range(steps):
            token = logits[0, -1].argmax()
            out.append(CHARS[int(token)])
            logits, h = module(token.view(1, 1), h, encoder_out)
    return "".join(out)


@pytest.fixture(scope="module")
def decoder(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    module = AttentionDecoder().eval()
    example = (torch.zeros(2, 3, dtype=torch.long), torch.zeros(1, 2, H), torch.randn(2, 5, H))
    bundle, _ = edgekit.export(
        module, example, tmp_path_factory.mktemp("ctx") / "decoder", **DECLARED
    )
    return module, bundle


def encoder_outputs(streams: int, seed: int) -> torch.Tensor:
    return torch.randn(streams, SOURCE, H, generator=torch.Generator().manual_seed(seed))


def test_generate_and_a_session_equal_torchs_greedy_loop(decoder: tuple[nn.Module, Path]):
    module, bundle = decoder
    g = edgekit.load(bundle)
    assert g.manifest.contract.context == ["encoder_out"]
    enc = encoder_outputs(1, 1)
    want = torch_greedy(module, "abc", enc, 200)
    context = {"encoder_out": enc.numpy()}
    assert g.generate("abc", 200, temperature=0, context=context) == want
    session = g.session(context=context)
    session.feed("abc")
    assert "".join(session.step(temperature=0) for _ in range(200)) == want
    other = encoder_outputs(1, 2)  # another source sentence, another continuation
    assert g.generate("abc", 200, temperature=0, context={"encoder_out": other.numpy()}) == (
        torch_greedy(module, "abc", other, 200)
    )


def test_generate_batch_stacks_each_streams_context(decoder: tuple[nn.Module, Path]) -> None:
    module, bundle = decoder
    prompts = ["abc", "dd", "fgh"]  # two lengths: prefilled in groups
    enc = encoder_outputs(3, 3)
    got = edgekit.load(bundle).generate_batch(
        prompts, 200, temperature=0, context={"encoder_out": enc.numpy()}
    )
    assert got == [torch_greedy(module, p, enc[i : i + 1], 200) for i, p in enumerate(prompts)]
    # or one context per prompt, each with its batch axis of 1 or without it: stacked for us
    per_stream = [{"encoder_out": enc[0:1].numpy()}, {"encoder_out": enc[1].numpy()},
                  {"encoder_out": enc[2:3].numpy()}]  # fmt: skip
    g = edgekit.load(bundle)
    assert g.generate_batch(prompts, 200, temperature=0, context=per_stream) == got
    assert g.generate("dd", 200, temperature=0, context=per_stream[1]) == got[1]
    with pytest.raises(InputError, match="context: 2 streams' contexts for 3 streams"):
        g.generate_batch(prompts, 5, context=per_stream[:2])


def test_the_golden_rollout_keeps_its_context_and_check_replays_it(
    decoder: tuple[nn.Module, Path],
) -> None:
    from typer.testing import CliRunner

    from edgekit.cli import app

    _, bundle = decoder
    with np.load(bundle / "golden.npz") as golden:
        assert golden["rollout/context/encoder_out"].shape[0] == 1
    result = CliRunner().invoke(app, ["check", str(bundle)])
    assert result.exit_code == 0, result.output
    assert edgekit.load(bundle).check().passed


def test_context_mistakes_are_one_clear_error(decoder: tuple[nn.Module, Path]) -> None:
    _, bundle = decoder
    g = edgekit.load(bundle)
    with pytest.raises(InputError, match=r"reads the context \['encoder_out'\] at every step"):
        g.generate("abc", 5)
    with pytest.raises(InputError, match="context encoder_out: shape .* with 1 along 'batch'"):
        g.generate("abc", 5, context={"encoder_out": np.zeros((2, SOURCE, H), np.float32)})
    with pytest.raises(InputError, match="context 'h' must be an input that is not state"):
        torch.manual_seed(0)
        edgekit.export(
            AttentionDecoder(), (torch.zeros(2, 3, dtype=torch.long), torch.zeros(1, 2, H),
                                 torch.randn(2, 5, H)), bundle.parent / "bad",
            input_names=["tokens", "h", "encoder_out"], output_names=["logits", "h_out"],
            state_pairs=[("h", "h_out")], context=["h"], task="generate", vocab=CHARS,
        )  # fmt: skip


def sequence_rollout(url: str, model: str, prompt: str, context: dict, every: bool) -> str:
    """Greedy, one token per request over the v2 sequence protocol; `context` with the first
    request (edgekit serve keeps it) or with `every` request (Triton: an ordinary input)."""
    import http.client
    import json

    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    ids, got = [CHARS.index(c) for c in prompt], []
    try:
        for step in range(201):
            tokens = {"name": "tokens", "datatype": "INT64", "shape": [1, len(ids)], "data": ids}
            control = {"sequence_id": 7, "sequence_start": step == 0, "sequence_end": step == 200}
            inputs = [tokens, context] if step == 0 or every else [tokens]
            conn.request("POST", f"/v2/models/{model}/infer",
                         json.dumps({"inputs": inputs, "parameters": control}))  # fmt: skip
            response = conn.getresponse()
            out = json.loads(response.read())
            assert response.status == 200, out
            logits = np.asarray(out["outputs"][0]["data"]).reshape(out["outputs"][0]["shape"])
            ids = [int(logits[0, -1].argmax())]
            got.append(CHARS[ids[0]])
    finally:
        conn.close()
    return "".join(got[:200])


def context_tensor(enc: torch.Tensor) -> dict:
    return {"name": "encoder_out", "datatype": "FP32", "shape": list(enc.shape),
            "data": enc.reshape(-1).tolist()}  # fmt: skip


def test_edgekit_serve_takes_the_context_at_sequence_start_and_in_generate(
    decoder: tuple[nn.Module, Path],
) -> None:
    import http.client
    import json

    from tests.test_serve import start_server

    module, bundle = decoder
    enc = encoder_outputs(1, 5)
    want = torch_greedy(module, "abc", enc, 200)
    url, _, server = start_server([("decoder", bundle)])
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        body = {"text_input": "abc", "parameters": {"max_tokens": 200, "temperature": 0},
                "inputs": [context_tensor(enc)]}  # fmt: skip
        conn.request("POST", "/v2/models/decoder/generate", json.dumps(body))
        assert json.loads(conn.getresponse().read())["text_output"] == want
        # token by token: the state and the context kept on the server per sequence
        assert sequence_rollout(url, "decoder", "abc", context_tensor(enc), every=False) == want
    finally:
        conn.close()
        server.should_exit = True


@pytest.mark.skipif(
    not __import__("os").environ.get("EDGEKIT_TRITONSERVER"),
    reason="EDGEKIT_TRITONSERVER is not set (the path of a tritonserver with the onnxruntime "
    "backend; .ci/run sets one up from ../shared/triton)",
)
def test_a_real_triton_runs_the_decoder_with_its_context_sent_each_request(
    decoder: tuple[nn.Module, Path], tmp_path: Path
) -> None:
    from edgekit.exporters.triton_repository import write_repository
    from tests.triton_process import running_triton

    module, bundle = decoder
    write_repository(bundle, tmp_path / "repo", name="decoder")
    write_repository(bundle, tmp_path / "batched", name="batched", batch_sequences=True)
    repositories = [tmp_path / "repo", tmp_path / "batched"]
    with running_triton(repositories, ["decoder", "batched"], tmp_path / "triton.log") as url:
        enc = encoder_outputs(1, 6)
        want = torch_greedy(module, "abc", enc, 200)
        for model in ("decoder", "batched"):
            assert sequence_rollout(url, model, "abc", context_tensor(enc), every=True) == want


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


class QueryByHidden(nn.Module):
    """tokens (B, T), h (1, B, H), encoder_out (B, S, H) -> logits (B, T, V), h: the step of the
    PyTorch seq2seq tutorial's decoder, in its shape. Additive (Bahdanau) attention takes the
    hidden state as its query, and the GRU reads the token with the attended context, so a call
    of T > 1 tokens cannot be T steps (its one context does not concatenate with T tokens)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(len(CHARS), H)
        self.query, self.key, self.score = nn.Linear(H, H), nn.Linear(H, H), nn.Linear(H, 1)
        self.gru = nn.GRU(2 * H, H, batch_first=True)
        self.head = nn.Linear(H, len(CHARS))

    def forward(self, tokens, h, encoder_out):
        energy = torch.tanh(self.query(h.transpose(0, 1)) + self.key(encoder_out))  # (B, S, H)
        weights = torch.softmax(self.score(energy).transpose(1, 2), dim=-1)  # (B, 1, S)
        read = torch.cat([self.embed(tokens), weights @ encoder_out], dim=-1)  # (B, 1, 2H)
        y, h = self.gru(read, h)
        return self.head(y) * 4, h


def test_the_tutorials_decoder_step_exports_as_a_step(tmp_path: Path) -> None:
    torch.manual_seed(1)
    module = QueryByHidden().eval()
    spread(module, 4)  # random weights at a scale where greedy text varies
    example = (torch.zeros(2, 1, dtype=torch.long), torch.zeros(1, 2, H), torch.randn(2, 5, H))
    bundle, manifest = edgekit.export(module, example, tmp_path / "tutorial", **DECLARED)
    assert "16-token prompt fed in one call" in manifest["exporter"]["step_only_why"]

    def stepped(prompt: str, encoder_out: torch.Tensor, steps: int) -> str:
        h, out = torch.zeros(1, 1, H), []
        with torch.no_grad():
            for c in prompt:
                logits, h = module(torch.tensor([[CHARS.index(c)]]), h, encoder_out)
            for _ in range(steps):
                out.append(CHARS[int(logits[0, -1].argmax())])
                logits, h = module(torch.tensor([[CHARS.index(out[-1])]]), h, encoder_out)
        return "".join(out)

    enc = encoder_outputs(2, 5)
    want = [stepped(p, enc[i : i + 1], 200) for i, p in enumerate(["abc", "dd"])]
    assert len(set(want[0])) > 3
    g = edgekit.load(bundle)
    assert g.generate("abc", 200, temperature=0, context={"encoder_out": enc[0].numpy()}) == want[0]
    session = g.session(context={"encoder_out": enc[1:2].numpy()})
    session.feed("dd")
    assert "".join(session.step(temperature=0) for _ in range(200)) == want[1]
    got = g.generate_batch(["abc", "dd"], 200, temperature=0, context={"encoder_out": enc.numpy()})
    assert got == want
    assert g.check().passed


def test_device_auto_steps_context_inputs_on_onnx_runtime(decoder: tuple[nn.Module, Path]) -> None:
    module, bundle = decoder
    g = edgekit.load(bundle, device="auto")
    assert g.backend.name == "ort-cpu"  # OpenVINO does not step bundles with context inputs
    enc = encoder_outputs(1, 1)
    got = g.generate("abc", 30, temperature=0, context={"encoder_out": enc.numpy()})
    assert got == torch_greedy(module, "abc", enc, 30)


def test_edgekit_generate_reads_the_context_from_an_npz(
    decoder: tuple[nn.Module, Path], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from edgekit.cli import app

    module, bundle = decoder
    enc = encoder_outputs(1, 4)
    np.savez(tmp_path / "one.npz", encoder_out=enc[0].numpy())  # the batch axis left out
    np.savez(tmp_path / "wrong.npz", encoder=enc.numpy())
    args = ["generate", str(bundle), "--prompt", "abc", "--max-new-tokens", "40", "--temperature"]
    result = CliRunner().invoke(app, [*args, "0", "--context", str(tmp_path / "one.npz")])
    assert result.exit_code == 0, result.output
    assert result.output.rstrip("\n") == "abc" + torch_greedy(module, "abc", enc, 40)
    for given in (["--context", str(tmp_path / "wrong.npz")], []):
        refused = CliRunner().invoke(app, [*args, "0", *given])
        assert refused.exit_code == 2 and "--context FILE.npz" in refused.output, refused.output
        assert len(refused.output.strip().splitlines()) == 1
