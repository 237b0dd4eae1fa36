"""A transformers decoder with its KV cache: GPT-2 from a tiny config with random weights, through
the documented adapter (the cache in and out as tensors, rebuilt as transformers' DynamicCache
inside), exports as a growing state and generates text equal to transformers' own cached greedy
loop for 200 tokens through `generate`, a session, `generate_batch` and `edgekit check`; so does
Llama (rotary positions, grouped-query attention) through the same adapter."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.random_weights import spread

transformers = pytest.importorskip("transformers", reason="needs transformers (the dev extra)")

CHARS = list("abcdefghijklmnop .")
LAYERS, HEADS, WIDTH = 2, 2, 32


class WithPast(nn.Module):
    """The adapter: tokens (B, T) and each layer's past k, v (B, heads, P, d) in; logits and each
    layer's present k, v (B, heads, P + T, d) out, as plain tensors."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, tokens, k0, v0, k1, v1):
        from transformers.cache_utils import DynamicCache

        cache = DynamicCache.from_legacy_cache(((k0, v0), (k1, v1)))
        out = self.lm(input_ids=tokens, past_key_values=cache, use_cache=True)
        (pk0, pv0), (pk1, pv1) = out.past_key_values.to_legacy_cache()
        return out.logits, pk0, pv0, pk1, pv1


def tiny_gpt2() -> nn.Module:
    config = transformers.GPT2Config(
        n_layer=LAYERS, n_embd=WIDTH, n_head=HEADS, vocab_size=len(CHARS), n_positions=256,
        attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(0)
    lm = transformers.GPT2LMHeadModel(config).eval()
    spread(lm, 20)  # random weights at a scale where greedy text varies
    return lm


def hf_greedy(lm: nn.Module, prompt: str, steps: int) -> str:
    """transformers' own loop: its cache object grows one token per call."""
    ids = torch.tensor([[CHARS.index(c) for c in prompt]])
    out, text = [], ""
    with torch.no_grad():
        result = lm(input_ids=ids, use_cache=True)
        for _ in range(steps):
            token = result.logits[0, -1].argmax()
            out.append(CHARS[int(token)])
            result = lm(input_ids=token.view(1, 1), past_key_values=result.past_key_values)
        text = "".join(out)
    return text


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    import edgekit

    lm = tiny_gpt2()
    names = [(f"{kv}{i}", f"present_{kv}{i}") for i in range(LAYERS) for kv in "kv"]
    axes = {"tokens": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"}}
    axes |= {i: {0: "batch", 2: "past"} for i, _ in names}
    axes |= {o: {0: "batch", 2: "total"} for _, o in names}
    past = torch.zeros(2, HEADS, 4, WIDTH // HEADS)
    with warnings.catch_warnings():  # transformers' and the exporters' own deprecation notes
        warnings.simplefilter("ignore")
        bundle, _ = edgekit.export(
            WithPast(lm), (torch.zeros(2, 3, dtype=torch.long), *[past] * 4),
            tmp_path_factory.mktemp("gpt2") / "gpt2",
            input_names=["tokens", *(i for i, _ in names)],
            output_names=["logits", *(o for _, o in names)], dynamic_axes=axes,
            state_pairs=names, max_length=256, task="generate", vocab=CHARS,
        )  # fmt: skip
    return lm, Path(bundle)


def test_a_transformers_decoder_generates_as_its_own_cached_loop(gpt2) -> None:
    import edgekit

    lm, bundle = gpt2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = hf_greedy(lm, "abc", 200)
        others = [hf_greedy(lm, p, 200) for p in ("dea", "ppp")]
    assert len(set(want)) > 3  # text that varies, so agreement means something
    g = edgekit.load(bundle)
    assert g.generate("abc", 200, temperature=0) == want
    session = g.session()
    session.feed("abc")
    assert "".join(session.step(temperature=0) for _ in range(200)) == want
    assert g.generate_batch(["abc", "dea", "ppp"], 200, temperature=0) == [want, *others]
    assert g.check().passed


def test_edgekit_serve_generates_with_the_transformers_decoder(gpt2) -> None:
    import http.client
    import json

    from tests.test_serve import start_server

    lm, bundle = gpt2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = hf_greedy(lm, "abc", 200)
    url, _, server = start_server([("gpt2", bundle)])
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        body = {"text_input": "abc", "parameters": {"max_tokens": 200, "temperature": 0}}
        conn.request("POST", "/v2/models/gpt2/generate", json.dumps(body))
        assert json.loads(conn.getresponse().read())["text_output"] == want
    finally:
        conn.close()
        server.should_exit = True


def test_model_outputs_flatten_by_field_and_a_cache_object_names_the_adapter(tmp_path) -> None:
    """transformers' outputs (ModelOutput, registered with torch's pytree without key paths)
    export with their fields as names; a cache object in or out is one line pointing to the
    adapter, not the pytree's own ValueError."""
    import numpy as np

    import edgekit
    from edgekit.errors import InputError

    config = transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=3,
    )  # fmt: skip
    torch.manual_seed(0)
    bert = transformers.BertForSequenceClassification(config).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle, manifest = edgekit.export(
            bert, (torch.randint(0, 50, (2, 7)),), tmp_path / "bert",
            input_names=["ids"], dynamic_axes={"ids": {0: "batch", 1: "seq"}},
        )  # fmt: skip
    assert [o["name"] for o in manifest["outputs"]] == ["output.logits"]
    ids = np.random.default_rng(0).integers(0, 50, (3, 9))
    with torch.no_grad():
        want = bert(torch.from_numpy(ids)).logits.numpy()
    got = edgekit.load(bundle).backend.run({"ids": ids})["output.logits"]
    np.testing.assert_allclose(got, want, atol=1e-4)

    from transformers.cache_utils import DynamicCache

    past = torch.zeros(2, HEADS, 4, WIDTH // HEADS)
    cache = DynamicCache.from_legacy_cache(((past, past), (past, past)))
    for example, where in (
        ((torch.zeros(2, 3, dtype=torch.long), cache), "input input.1"),
        ((torch.zeros(2, 3, dtype=torch.long),), "output output.past_key"),
    ):
        with warnings.catch_warnings(), pytest.raises(InputError) as refused:
            warnings.simplefilter("ignore")
            edgekit.export(tiny_gpt2(), example, tmp_path / "raw", task="generic")
        line = str(refused.value)
        assert line.startswith(where) and "is a DynamicCache, not a tensor" in line, line
        assert "adapter" in line and "\n" not in line


def test_llama_with_grouped_query_attention_generates_as_its_own_cached_loop(tmp_path) -> None:
    """The same adapter on Llama (rotary positions, 4 query heads over 2 key/value heads): the
    cache holds the 2 key/value heads, and the text equals transformers' own cached loop."""
    import edgekit

    config = transformers.LlamaConfig(
        vocab_size=len(CHARS), hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=LAYERS,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )  # fmt: skip
    torch.manual_seed(0)
    lm = transformers.LlamaForCausalLM(config).eval()
    spread(lm, 10)  # random weights at a scale where greedy text varies
    names = [(f"{kv}{i}", f"present_{kv}{i}") for i in range(LAYERS) for kv in "kv"]
    axes = {"tokens": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"}}
    axes |= {i: {0: "batch", 2: "past"} for i, _ in names}
    axes |= {o: {0: "batch", 2: "total"} for _, o in names}
    past = torch.zeros(2, 2, 4, WIDTH // 4)  # (B, key/value heads, P, head size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle, _ = edgekit.export(
            WithPast(lm), (torch.zeros(2, 3, dtype=torch.long), *[past] * 4), tmp_path / "llama",
            input_names=["tokens", *(i for i, _ in names)],
            output_names=["logits", *(o for _, o in names)], dynamic_axes=axes,
            state_pairs=names, max_length=256, task="generate", vocab=CHARS,
        )  # fmt: skip
        want, *others = [hf_greedy(lm, p, 200) for p in ("abc", "dea", "ppp")]
    assert len(set(want)) > 5
    g = edgekit.load(bundle)
    assert g.generate("abc", 200, temperature=0) == want
    assert g.generate_batch(["abc", "dea", "ppp"], 200, temperature=0) == [want, *others]
    assert g.check().passed
