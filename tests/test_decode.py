"""The one decoding loop: stop strings, equal results from every way of generating, no allocation."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import edgekit
from edgekit.runtimes.decode import Decoder, Sampling, StopMatcher


def _cut(full: str, stops: list[str]) -> str:
    """Reference semantics: at the first prefix that contains a stop string, the text ends before
    the earliest stop occurrence in it."""
    for k in range(1, len(full) + 1):
        found = [full[:k].find(s) for s in stops if s in full[:k]]
        if found:
            return full[: min(found)]
    return full


def _run(matcher: StopMatcher, vocab: list[str], text_tokens: list[str]) -> tuple[int, int] | None:
    """Push single-stream tokens; (tokens pushed, chars to drop) at the first hit."""
    for n, tok in enumerate(text_tokens, start=1):
        hits = matcher.push(np.array([vocab.index(tok)], np.int64))
        if hits:
            return n, hits[0][1]
    return None


@pytest.mark.parametrize(
    ("text", "stops"),
    [
        ("hello world", ["o w"]),
        ("hello world", ["ld", "d"]),  # both complete on "d": the text ends before the earlier
        ("hello world", ["d", "ld"]),  # order does not matter
        ("abcabcabd", ["abd", "bca"]),
        ("aaaa", ["aa"]),
        ("hello", ["xyz", "€"]),  # never completes; "€" is not even in the vocabulary
    ],
)
def test_character_stops_match_the_reference(text: str, stops: list[str]) -> None:
    vocab = sorted(set("helowrdabcxyz "))
    hit = _run(StopMatcher(stops, vocab, 1), vocab, list(text))
    got = text if hit is None else text[: hit[0]][: hit[0] - hit[1]]
    assert got == _cut(text, stops)


def test_text_vocabulary_stops_may_span_tokens() -> None:
    vocab = ["he", "llo", " wor", "ld", "!"]
    tokens = ["he", "llo", " wor", "ld", "!"]
    matcher = StopMatcher(["lo w"], vocab, 1)
    assert not matcher.by_chars
    n, drop = _run(matcher, vocab, tokens) or (0, 0)
    text = "".join(tokens[:n])
    assert (n, text[: len(text) - drop]) == (3, "hel")


def test_streams_are_matched_independently() -> None:
    vocab = list("ab")
    matcher = StopMatcher(["ab"], vocab, 3)
    assert matcher.push(np.array([0, 1, 0])) == ()
    assert matcher.push(np.array([1, 1, 0])) == ((0, 2),)
    assert matcher.push(np.array([1, 0, 1])) == ((2, 2),)  # "abb", "bba", "aab"


@pytest.fixture(scope="module")
def charlm(tiny_bundles: dict[str, Path]) -> object:
    return edgekit.load(tiny_bundles["charlm"])


def test_every_way_of_generating_agrees(charlm: object) -> None:
    g = charlm
    prompts = ["the ", "a", "of the"]
    fulls = [g.generate(p, 60, temperature=0) for p in prompts]  # type: ignore[attr-defined]
    stops = [fulls[0][12:15], fulls[1][20:21], fulls[2][5:7]]
    want = [_cut(f, stops) for f in fulls]
    assert g.generate_batch(prompts, 60, temperature=0, stop=stops) == want  # type: ignore[attr-defined]
    for p, w in zip(prompts, want, strict=True):
        assert g.generate(p, 60, temperature=0, stop=stops) == w  # type: ignore[attr-defined]
        assert "".join(g.stream(p, 60, temperature=0, stop=stops)) == w  # type: ignore[attr-defined]
    session = g.session()  # type: ignore[attr-defined]
    session.feed(prompts[0])
    assert "".join(session.step(0) for _ in range(60)) == fulls[0]


def test_one_prompt_batch_samples_like_generate(charlm: object) -> None:
    g = charlm
    kwargs = {"temperature": 0.9, "top_k": 8, "top_p": 0.95, "seed": 7}
    single = g.generate("the ", 50, **kwargs)  # type: ignore[attr-defined]
    assert g.generate_batch(["the "], 50, **kwargs) == [single]  # type: ignore[attr-defined]


def test_greedy_steps_allocate_no_arrays(charlm: object) -> None:
    """With 512 streams a logits copy is 512 x V x 4 bytes and an argmax result 4 KiB; the loop's
    peak Python-side allocation above its start stays below either."""
    backend = charlm.backend  # type: ignore[attr-defined]
    vocab = charlm.vocab  # type: ignore[attr-defined]
    stepper = backend.stepper(512)
    stepper.prefill(np.zeros((512, 3), np.int64))  # every stream on the same greedy path
    warm = Decoder(stepper, Sampling(temperature=0), np.random.default_rng(0))
    seen = set()
    for _ in range(200):  # greedy decoding of a tiny model settles into a cycle well within this
        warm.advance()
        seen |= set(warm.tokens.tolist())
    # a stop string every stream is checked against on every step (its last token is not produced,
    # so the check stays on the table-lookup path)
    unused = next(t for t in range(len(vocab)) if t not in seen)
    decoder = Decoder(
        stepper, Sampling(temperature=0), np.random.default_rng(0), [vocab[unused]] * 2, vocab
    )
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        hits = 0
        for _ in range(50):
            hits += len(decoder.advance())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert hits == 0, (
        "the greedy cycle reached the stop's token: this check needs one it never does"
    )
    assert peak - start < 2048, f"the step loop allocated {peak - start} bytes at its peak"
