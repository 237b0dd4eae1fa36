"""Stateful character generation over a recurrent bundle: prefill once, then one bound call per token."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from edgekit.bundle.io import TIME
from edgekit.bundle.manifest import Manifest
from edgekit.errors import InputError
from edgekit.runtimes.base import Backend
from edgekit.runtimes.decode import Decoder, Generation, Sampling
from edgekit.runtimes.golden import SelfCheck
from edgekit.runtimes.sampling import check_sampling, check_seed
from edgekit.runtimes.stepper import prefill_chunks


class GenerationSession:
    """One independent stream: `feed(text)`, `step() -> char`, `state` (numpy), `reset()`. A
    bundle with context inputs (e.g. a decoder's encoder outputs) reads `context` at every call."""

    def __init__(
        self,
        generator: Generator,
        seed: int | None = None,
        context: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        check_seed(seed)
        self._generator = generator
        self._stepper = generator.backend.stepper(1)
        if context or generator.backend.layout.context:
            self._stepper.set_context(context or {})  # checked: names, shape, batch 1
        self._rng = np.random.default_rng(seed)
        self._decoder = Decoder(self._stepper, Sampling(), self._rng)
        self._ready = False  # logits for the next token are available

    def feed(self, text: str) -> None:
        """Run `text` through the model (in calls of at most 1024 steps), continuing from the state."""
        ids = self._generator.encode(text)
        self._stepper.prefill(ids[None, :])
        self._ready = True

    def step(
        self, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
    ) -> str:
        """Sample the next character, feed it back (one T = 1 call), and return it."""
        if not self._ready:
            raise InputError("feed() some text before step(): there is nothing to continue from")
        sampling = self._decoder.sampling
        if (sampling.temperature, sampling.top_k, sampling.top_p) != (temperature, top_k, top_p):
            check_sampling(temperature, top_k, top_p)
            self._decoder.sampling = Sampling(temperature, top_k, top_p)
        self._decoder.advance()
        return self._generator.vocab[self._decoder.tokens[0]]

    @property
    def state(self) -> dict[str, np.ndarray]:
        """A copy of the session: the recurrent state by state input name (e.g. (L, 1, H)) and, once
        text has been fed, "logits" (1, V) for the next token, so a restored session continues exactly."""
        snapshot = self._stepper.get_state()
        if self._ready:
            snapshot["logits"] = self._stepper.next_logits.copy()
        return snapshot

    @state.setter
    def state(self, value: dict[str, np.ndarray]) -> None:
        value = dict(value)
        logits = value.pop("logits", None)
        self._stepper.set_state(value)
        self._ready = logits is not None  # without logits, feed() text before step()
        if logits is not None:
            logits = np.asarray(logits, dtype=np.float32)
            expected = self._stepper.next_logits.shape
            if logits.shape != expected:
                raise InputError(f"state logits: shape {logits.shape}, expected {expected}")
            self._stepper.next_logits[...] = logits

    def reset(self) -> None:
        self._stepper.reset()
        self._ready = False


class Generator(SelfCheck):
    task = "generate"

    def __init__(self, backend: Backend, manifest: Manifest | Mapping[str, Any]) -> None:
        self.backend = backend
        self.manifest = manifest = Manifest.for_task("generate", backend.contract, manifest)
        if not manifest.vocab:
            raise InputError(
                "this generation bundle has no vocabulary, so text cannot be encoded; export it "
                "with vocab=[...] (the token of each id), or run it with .backend"
            )
        self.vocabulary = manifest.vocabulary()
        self.vocab: list[str] = list(self.vocabulary.tokens)

    @property
    def device(self) -> str:
        return self.backend.device

    def encode(self, text: str) -> np.ndarray:
        if not text:
            raise InputError("the prompt is empty; give at least one character")
        index = self.vocabulary.index
        unknown = sorted({ch for ch in text if ch not in index})
        if unknown:
            raise InputError(
                f"prompt characters not in the model's vocabulary: {unknown} "
                f"(the vocabulary has {len(self.vocab)} characters from the training text)"
            )
        return np.fromiter((index[ch] for ch in text), dtype=np.int64, count=len(text))

    def _new_tokens(self, prompt_tokens: int, asked: int) -> int:
        """How many tokens to generate after a prompt: `asked`, unless a growing state (a KV
        cache) would pass its max_length; then as many as it holds where the bundle was exported
        with when_full="stop", else one clear error before anything is computed."""
        contract = self.backend.contract
        most = contract.max_positions
        if most is None:
            return asked
        room = most - prompt_tokens
        if room < 0:
            raise InputError(
                f"the prompt has {prompt_tokens} tokens, more than the {most} positions this "
                "bundle's KV cache holds (max_length)"
            )
        if asked > room and contract.when_full == "error":
            raise InputError(
                f"a prompt of {prompt_tokens} tokens and {asked} new tokens need "
                f"{prompt_tokens + asked} positions; this bundle's KV cache holds {most} "
                f"(max_length): ask for at most {room} new tokens, or export with "
                "when_full='stop' to end the text there"
            )
        return min(asked, room)

    def session(
        self, seed: int | None = None, context: Mapping[str, np.ndarray] | None = None
    ) -> GenerationSession:
        """A stream of its own; `context`: the per-stream inputs of a bundle that has them, each
        with batch 1."""
        return GenerationSession(self, seed, context)

    def stream(
        self,
        prompt: str,
        max_new_tokens: int = 100,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        *,
        options: Generation | None = None,
        context: Mapping[str, np.ndarray] | None = None,
    ) -> Iterator[str]:
        """Yield generated characters as they are produced (a stop string itself is not yielded).
        `options` (a Generation) stands for all the keyword arguments at once.

        With stop strings, the last (longest stop - 1) tokens are held back until they can no
        longer begin one."""
        options = options or Generation(
            max_new_tokens, Sampling(temperature, top_k, top_p), seed, stop
        )
        stops = options.stops(streaming=True)
        return self._stream(prompt, options, stops, context)

    def _stream(
        self,
        prompt: str,
        options: Generation,
        stops: list[str],
        context: Mapping[str, np.ndarray] | None = None,
    ) -> Iterator[str]:
        max_new_tokens = self._new_tokens(len(prompt), options.max_new_tokens)
        session = self.session(options.seed, context)
        session.feed(prompt)
        decoder = Decoder(session._stepper, options.sampling, session._rng, stops, self.vocabulary)
        matcher, vocab, tokens = decoder.matcher, self.vocab, decoder.tokens
        hold = matcher.window - 1 if matcher.active else 0
        for produced in range(1, max_new_tokens + 1):
            hits = decoder.advance()
            if hits:  # the held tokens and this one, less the stop string
                pending = "".join(vocab[t] for t in matcher.recent(0, min(hold + 1, produced)))
                yield from pending[: len(pending) - hits[0][1]]
                return
            if not hold:
                yield vocab[tokens[0]]
            elif produced > hold:  # the token `hold` steps back can no longer begin a stop
                yield vocab[matcher.history[0, (produced - 1 - hold) % matcher.window]]
        yield from (vocab[t] for t in matcher.recent(0, min(hold, max_new_tokens)))

    def generate(
        self,
        prompt: str,
        max_new_tokens: int = 100,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        *,
        options: Generation | None = None,
        context: Mapping[str, np.ndarray] | None = None,
    ) -> str:
        """The generated continuation of `prompt` (without the prompt); `context` as for
        `session`."""
        options = options or Generation(
            max_new_tokens, Sampling(temperature, top_k, top_p), seed, stop
        )
        return "".join(self._stream(prompt, options, options.stops(), context))

    def generate_batch(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 100,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        *,
        options: Generation | None = None,
        context: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]] | None = None,
    ) -> list[str]:
        """Advance many independent streams with one batched call per step.

        Prompts of different lengths are prefilled in groups of equal length (no padding, which
        would change a recurrent state), then every stream steps together. `context`: each
        stream's context, stacked along the batch axis (batch = len(prompts)), or a sequence of
        one mapping per prompt, which is stacked here.
        """
        options = options or Generation(
            max_new_tokens, Sampling(temperature, top_k, top_p), seed, stop
        )
        stops = options.stops()
        longest = max((len(p) for p in prompts), default=0)
        max_new_tokens = self._new_tokens(longest, options.max_new_tokens)
        if not prompts or not max_new_tokens:
            return [""] * len(prompts)
        stepper = self._prefilled(prompts, context)
        rng = np.random.default_rng(options.seed)
        decoder = Decoder(stepper, options.sampling, rng, stops, self.vocabulary)
        produced = np.empty((max_new_tokens, len(prompts)), np.int64)  # (steps, B)
        ends: dict[int, tuple[int, int]] = {}  # stream -> (tokens kept, characters then dropped)
        for n in range(max_new_tokens):
            hits = decoder.advance()
            produced[n] = decoder.tokens
            for stream, drop in hits:
                ends.setdefault(stream, (n + 1, drop))  # its first stop string ends it
            if len(ends) == len(prompts):
                break
        texts = []
        for stream in range(len(prompts)):
            kept, drop = ends.get(stream, (n + 1, 0))
            text = "".join(self.vocab[t] for t in produced[:kept, stream])
            texts.append(text[: len(text) - drop])
        return texts

    def _prefilled(
        self,
        prompts: Sequence[str],
        context: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]] | None = None,
    ) -> Any:
        """A stepper of len(prompts) streams, each prefilled with its prompt."""
        encoded = [self.encode(p) for p in prompts]
        layout = self.backend.layout
        stepper = self.backend.stepper(len(prompts))
        feeds = layout.stacked_context(context, len(prompts)) if context or layout.context else {}
        if feeds:
            stepper.set_context(feeds)
        if self.backend.contract.growing:  # a KV cache: every stream must hold one length
            if len({len(e) for e in encoded}) > 1:
                raise InputError(
                    "a bundle whose state grows (a KV cache) batches prompts of equal length: "
                    f"got lengths {sorted({len(e) for e in encoded})}"
                )
            stepper.prefill(np.stack(encoded))
            return stepper
        state = stepper.get_state()
        for length in sorted({len(e) for e in encoded}):
            rows = [i for i, e in enumerate(encoded) if len(e) == length]
            ids = np.stack([encoded[i] for i in rows])  # (rows, length)
            part = layout.take_rows(state, rows)
            rows_context = layout.take_context(feeds, rows)
            for piece in prefill_chunks(
                ids, len(rows), layout.contract.most(TIME)
            ):  # bounded memory
                tokens = layout.token_feed(piece)
                out = self.backend.run({layout.tokens.name: tokens, **part, **rows_context})
                part = layout.state_after(out)
            stepper.next_logits[rows] = layout.last_logits(out[layout.logits.name])
            layout.put_rows(state, rows, part)
        stepper.set_state(state)
        return stepper
