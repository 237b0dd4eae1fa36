"""A state-space language model from transformers (Mamba, tiny config, random weights), step-only.

Its prompt path is a Python loop over time (no exporter keeps T dynamic), but its one-token step
with the cache as tensors exports. Declared `step_only=True`, or left to export to infer, the
bundle's graph takes one token per call, and every prompt is fed by stepping: `generate`, a session,
`generate_batch`, `edgekit check` and `edgekit serve` give transformers' own greedy text for 200
tokens."""

from __future__ import annotations

import json
import string
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.random_weights import spread

transformers = pytest.importorskip("transformers", reason="needs transformers (the dev extra)")

CHARS = list(string.ascii_letters + string.digits + " .")  # 64 tokens
LAYERS, WIDTH, STATE, KERNEL = 2, 32, 8, 4


class MambaStep(nn.Module):
    """The adapter: tokens (B, 1) and the cache as tensors, conv (L, B, D, K) and ssm (L, B, D, N),
    in; logits (B, 1, V) and the new cache out. Inside, transformers' MambaCache is rebuilt from
    them and the model takes its one-token path (a cache position past the kernel's width)."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, tokens, conv, ssm):
        from transformers.models.mamba.modeling_mamba import MambaCache

        cache = MambaCache(self.lm.config, tokens.shape[0], dtype=torch.float32)
        cache.conv_states = [c.clone() for c in conv.unbind(0)]  # updated in place by the model
        cache.ssm_states = [s.clone() for s in ssm.unbind(0)]
        out = self.lm(
            input_ids=tokens,
            cache_params=cache,
            use_cache=True,
            cache_position=torch.tensor([KERNEL - 1]),
        )
        return out.logits, torch.stack(cache.conv_states), torch.stack(cache.ssm_states)


def tiny_mamba() -> nn.Module:
    config = transformers.MambaConfig(
        vocab_size=len(CHARS), hidden_size=WIDTH, state_size=STATE, num_hidden_layers=LAYERS,
        conv_kernel=KERNEL, expand=2, pad_token_id=0, bos_token_id=0, eos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    lm = transformers.MambaForCausalLM(config).eval()
    spread(lm, 2)  # random weights at a scale where greedy text varies
    return lm


def hf_greedy(lm: nn.Module, prompt: str, steps: int) -> str:
    """transformers' own greedy loop (generate, with its cache)."""
    ids = torch.tensor([[CHARS.index(c) for c in prompt]])
    with torch.no_grad():
        out = lm.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=steps, min_new_tokens=steps,
            do_sample=False,
        )  # fmt: skip
    return "".join(CHARS[int(t)] for t in out[0, ids.shape[1] :])


def export_mamba(lm: nn.Module, out: Path, **declared) -> tuple[Path, dict]:
    import edgekit

    inner = lm.config.intermediate_size
    batch = {0: "batch"}
    with warnings.catch_warnings():  # transformers' and the exporters' own notices
        warnings.simplefilter("ignore")
        bundle, manifest = edgekit.export(
            MambaStep(lm),
            (torch.zeros(2, 1, dtype=torch.long), torch.zeros(LAYERS, 2, inner, KERNEL),
             torch.zeros(LAYERS, 2, inner, STATE)),
            out,
            input_names=["tokens", "conv", "ssm"], output_names=["logits", "conv_out", "ssm_out"],
            dynamic_axes={"tokens": {**batch, 1: "time"}, "logits": {**batch, 1: "time"},
                          **{n: {1: "batch"} for n in ("conv", "ssm", "conv_out", "ssm_out")}},
            state_pairs=[("conv", "conv_out"), ("ssm", "ssm_out")], task="generate", vocab=CHARS,
            **declared,
        )  # fmt: skip
    return Path(bundle), manifest


@pytest.fixture(scope="module")
def mamba(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path, dict]:
    lm = tiny_mamba()
    bundle, manifest = export_mamba(lm, tmp_path_factory.mktemp("mamba") / "mamba", step_only=True)
    return lm, bundle, manifest


def hf_texts(lm: nn.Module, prompts: list[str], steps: int) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [hf_greedy(lm, p, steps) for p in prompts]


def test_the_bundle_is_one_token_per_call(mamba) -> None:
    import onnx

    _, bundle, manifest = mamba
    time = next(a for a in manifest["axes"] if a["role"] == "time")
    assert time["max"] == 1
    graph = onnx.load(str(bundle / "model.onnx"), load_external_data=False).graph
    tokens = next(i for i in graph.input if i.name == "tokens")
    assert tokens.type.tensor_type.shape.dim[1].dim_value == 1  # static: T = 1


def test_a_state_space_lm_generates_as_its_own_greedy_loop(mamba) -> None:
    import edgekit

    lm, bundle, _ = mamba
    want, *others = hf_texts(lm, ["The cat", "dog", "A1b2"], 200)
    assert len(set(want)) > 5  # text that varies, so agreement means something
    g = edgekit.load(bundle)
    assert g.generate("The cat", 200, temperature=0) == want
    session = g.session()
    session.feed("The cat")
    assert "".join(session.step(temperature=0) for _ in range(200)) == want
    assert g.generate_batch(["The cat", "dog", "A1b2"], 200, temperature=0) == [want, *others]
    assert g.check().passed


def test_a_longer_call_is_refused_in_one_line(mamba) -> None:
    import edgekit
    from edgekit.errors import InputError

    _, bundle, _ = mamba
    backend = edgekit.load(bundle).backend
    feeds = backend.contract.example(1, 3, np.random.default_rng(0))
    feeds["tokens"] = np.zeros((1, 3), np.int64)
    with pytest.raises(InputError, match=r"tokens: axis 1 \(time\) is 3, expected <= 1"):
        backend.run(feeds)


def test_export_infers_step_only_where_no_exporter_keeps_time(tmp_path: Path) -> None:
    lm = tiny_mamba()
    bundle, manifest = export_mamba(lm, tmp_path / "inferred")
    attempts = manifest["exporter"]["attempts"]
    assert not any(a["passed"] for a in attempts if not a.get("step_only"))
    assert any(a["passed"] for a in attempts if a.get("step_only"))
    time = next(a for a in manifest["axes"] if a["role"] == "time")
    assert time["max"] == 1
    import edgekit

    want = hf_texts(lm, ["dog"], 50)[0]
    assert edgekit.load(bundle).generate("dog", 50, temperature=0) == want


def test_check_bench_and_serve_run_a_step_only_bundle(mamba) -> None:
    import http.client

    from typer.testing import CliRunner

    from edgekit.bench.core import run_bench
    from edgekit.bench.runner import Budget
    from edgekit.cli import app
    from tests.test_serve import start_server

    lm, bundle, _ = mamba
    runner = CliRunner()
    checked = runner.invoke(app, ["check", str(bundle)])
    assert checked.exit_code == 0, checked.output
    doc = run_bench(
        bundle, ["ort-cpu"], [1, 2], Budget(warmup=2, iters=50, rounds=1), cold_start=False
    )
    cases = {r["case"] for r in doc["results"] if r["backend"] == "ort-cpu"}
    assert {"step bound B=1", "step host B=2", "prefill T=16"} <= cases

    want = hf_texts(lm, ["The cat"], 200)[0]
    url, _, server = start_server([("mamba", bundle)])
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        body = {"text_input": "The cat", "parameters": {"max_tokens": 200, "temperature": 0}}
        conn.request("POST", "/v2/models/mamba/generate", json.dumps(body))
        assert json.loads(conn.getresponse().read())["text_output"] == want
    finally:
        conn.close()
        server.should_exit = True


def test_quantize_gates_a_step_only_variant_on_its_stepping_path(mamba, tmp_path: Path) -> None:
    import shutil

    import edgekit
    from edgekit.exporters.quantize import quantize_bundle

    lm, bundle, _ = mamba
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    result = quantize_bundle(copy, "fp16")
    gates = result["gates"]
    assert gates["passed"] and gates["rollout_steps"] == 200, gates
    want = hf_texts(lm, ["The cat"], 50)[0]
    assert edgekit.load(copy, precision="fp16").generate("The cat", 50, temperature=0) == want
    # int8 runs the same gates on the same path; whether it passes them is the model's affair
    int8 = quantize_bundle(copy, "int8", force=True)["gates"]
    assert int8["rollout_steps"] == 200 and 0 < int8["top1_agreement"] <= 1


def stepped_rollout(url: str, model: str, prompt: str, steps: int) -> str:
    """Greedy over the v2 sequence protocol, one token per request (prompt included): what a
    step-only model takes, on edgekit serve and on Triton alike."""
    import http.client

    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    feed, got = [CHARS.index(c) for c in prompt], []
    try:
        for call in range(len(feed) + steps):
            token = feed[call] if call < len(feed) else CHARS.index(got[-1])
            tokens = {"name": "tokens", "datatype": "INT64", "shape": [1, 1], "data": [token]}
            last = call == len(feed) + steps - 1
            control = {"sequence_id": 11, "sequence_start": call == 0, "sequence_end": last}
            conn.request("POST", f"/v2/models/{model}/infer",
                         json.dumps({"inputs": [tokens], "parameters": control}))  # fmt: skip
            response = conn.getresponse()
            out = json.loads(response.read())
            assert response.status == 200, out
            if call >= len(feed) - 1:
                got.append(CHARS[int(np.argmax(out["outputs"][0]["data"]))])
    finally:
        conn.close()
    return "".join(got[:steps])


def test_edgekit_serve_steps_a_sequence_token_by_token(mamba) -> None:
    from tests.test_serve import start_server

    lm, bundle, _ = mamba
    want = hf_texts(lm, ["dog"], 100)[0]
    url, _, server = start_server([("mamba", bundle)])
    try:
        assert stepped_rollout(url, "mamba", "dog", 100) == want
    finally:
        server.should_exit = True


@pytest.mark.skipif(
    not __import__("os").environ.get("EDGEKIT_TRITONSERVER"),
    reason="EDGEKIT_TRITONSERVER is not set (the path of a tritonserver with the onnxruntime "
    "backend; .ci/run sets one up from ../shared/triton)",
)
def test_a_real_triton_steps_the_state_space_lm(mamba, tmp_path: Path) -> None:
    from edgekit.exporters.triton_repository import write_repository
    from tests.triton_process import running_triton

    lm, bundle, _ = mamba
    write_repository(bundle, tmp_path / "repo", name="mamba")
    write_repository(bundle, tmp_path / "batched", name="batched", batch_sequences=True)
    repositories = [tmp_path / "repo", tmp_path / "batched"]
    want = hf_texts(lm, ["dog"], 100)[0]
    with running_triton(repositories, ["mamba", "batched"], tmp_path / "triton.log") as url:
        for model in ("mamba", "batched"):
            assert stepped_rollout(url, model, "dog", 100) == want


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("openvino") is None,
    reason="openvino is not installed (pip install 'edgekit-ml[openvino]'; the dev extra has it)",
)
def test_openvino_steps_the_step_only_bundle(mamba) -> None:
    import edgekit

    lm, bundle, _ = mamba
    want = hf_texts(lm, ["The cat"], 100)[0]
    g = edgekit.load(bundle, device="openvino", threads=1)
    assert g.generate("The cat", 100, temperature=0) == want  # the prompt fed by stepping
    assert g.check().passed


class Mamba2Step(nn.Module):
    """Mamba2's adapter: its cache holds conv (L, B, C, K) and ssm (L, B, heads, head_dim, N) as
    single tensors. With its cache position pinned past the kernel, a longer call still runs and
    broadcasts: only the torch-side comparison of one call against steps tells."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, tokens, conv, ssm):
        from transformers.models.mamba2.modeling_mamba2 import Mamba2Cache

        cache = Mamba2Cache(self.lm.config, tokens.shape[0], dtype=torch.float32)
        cache.conv_states, cache.ssm_states = conv.clone(), ssm.clone()
        out = self.lm(
            input_ids=tokens,
            cache_params=cache,
            use_cache=True,
            cache_position=torch.tensor([KERNEL - 1]),
        )
        return out.logits, cache.conv_states, cache.ssm_states


def test_mamba2_exports_its_step_alone_where_its_longer_call_is_not_its_steps(
    tmp_path: Path,
) -> None:
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Cache

    import edgekit

    config = transformers.Mamba2Config(
        vocab_size=len(CHARS), hidden_size=WIDTH, state_size=STATE, num_hidden_layers=LAYERS,
        conv_kernel=KERNEL, expand=2, num_heads=4, head_dim=16, n_groups=1, chunk_size=8,
        pad_token_id=0, bos_token_id=0, eos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    lm = transformers.Mamba2ForCausalLM(config).eval()
    spread(lm, 2)  # random weights at a scale where greedy text varies
    empty = Mamba2Cache(config, 2, dtype=torch.float32)
    axes = {n: {1: "batch"} for n in ("conv", "ssm", "conv_out", "ssm_out")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle, manifest = edgekit.export(
            Mamba2Step(lm), (torch.zeros(2, 1, dtype=torch.long), empty.conv_states,
                             empty.ssm_states), tmp_path / "mamba2",
            input_names=["tokens", "conv", "ssm"], output_names=["logits", "conv_out", "ssm_out"],
            dynamic_axes={"tokens": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"},
                          **axes},
            state_pairs=[("conv", "conv_out"), ("ssm", "ssm_out")], task="generate", vocab=CHARS,
        )  # fmt: skip
    assert "one-token calls" in manifest["exporter"]["step_only_why"]
    want, *others = hf_texts(lm, ["The cat", "dog"], 200)
    assert len(set(want)) > 5
    g = edgekit.load(bundle)
    assert g.generate("The cat", 200, temperature=0) == want
    assert g.generate_batch(["The cat", "dog"], 200, temperature=0) == [want, *others]
    assert g.check().passed
