"""Stateful character generation over a recurrent bundle: prefill once, then one bound call per token."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from edgekit.errors import InputError
from edgekit.runtimes.base import Backend
from edgekit.runtimes.golden import SelfCheck
from edgekit.runtimes.sampling import check_sampling, check_seed, sample

MAX_HELD_TOKENS = 1_000_000  # generate() and generate_batch() keep all text; stream() does not


def _check_generation(
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    stop: str | Sequence[str] | None,
    streaming: bool = False,
) -> list[str]:
    """Validate generation arguments; return the stop strings as a list."""
    check_sampling(temperature, top_k, top_p)
    if max_new_tokens < 0:
        raise InputError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if max_new_tokens > MAX_HELD_TOKENS and not streaming:
        raise InputError(
            f"max_new_tokens {max_new_tokens} is more than generate() holds in memory "
            f"({MAX_HELD_TOKENS}); use stream() (the CLI's --stream) for longer runs"
        )
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if any(not s for s in stops):
        raise InputError("stop strings must not be empty")
    return stops


class GenerationSession:
    """One independent stream: `feed(text)`, `step() -> char`, `state` (numpy), `reset()`."""

    def __init__(self, generator: Generator, seed: int | None = None) -> None:
        check_seed(seed)
        self._generator = generator
        self._stepper = generator.backend.stepper(1)
        self._rng = np.random.default_rng(seed)
        self._ready = False  # logits for the next token are available

    def feed(self, text: str) -> None:
        """Run `text` through the model in one call (T = len(text)), continuing from the state."""
        ids = self._generator.encode(text)
        self._stepper.prefill(ids[None, :])
        self._ready = True

    def step(
        self, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
    ) -> str:
        """Sample the next character, feed it back (one T = 1 call), and return it."""
        if not self._ready:
            raise InputError("feed() some text before step(): there is nothing to continue from")
        token = int(sample(self._stepper.next_logits, temperature, top_k, top_p, self._rng)[0])
        self._stepper.next_tokens[0] = token
        self._stepper.step()
        return self._generator.vocab[token]

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

    def __init__(self, backend: Backend, manifest: dict[str, Any]) -> None:
        self.backend = backend
        self.manifest = manifest
        if not manifest.get("vocab"):
            raise InputError(
                "this generation bundle has no vocabulary, so text cannot be encoded; export it "
                "with vocab=[...] (the token of each id), or run it with .backend"
            )
        self.vocab: list[str] = list(manifest["vocab"])
        self._index = {ch: i for i, ch in enumerate(self.vocab)}

    @property
    def device(self) -> str:
        return self.backend.device

    def encode(self, text: str) -> np.ndarray:
        if not text:
            raise InputError("the prompt is empty; give at least one character")
        unknown = sorted({ch for ch in text if ch not in self._index})
        if unknown:
            raise InputError(
                f"prompt characters not in the model's vocabulary: {unknown} "
                f"(the vocabulary has {len(self.vocab)} characters from the training text)"
            )
        return np.fromiter((self._index[ch] for ch in text), dtype=np.int64, count=len(text))

    def session(self, seed: int | None = None) -> GenerationSession:
        return GenerationSession(self, seed)

    def stream(
        self,
        prompt: str,
        max_new_tokens: int = 100,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> Iterator[str]:
        """Yield generated characters as they are produced (a stop string itself is not yielded)."""
        stops = _check_generation(max_new_tokens, temperature, top_k, top_p, stop, streaming=True)
        hold = max((len(s) for s in stops), default=1) - 1  # chars that may still start a stop
        session = self.session(seed)
        session.feed(prompt)
        if not stops:  # the common case: nothing to hold back
            for _ in range(max_new_tokens):
                yield session.step(temperature, top_k, top_p)
            return
        pending = ""
        for _ in range(max_new_tokens):
            pending += session.step(temperature, top_k, top_p)
            hit = next((s for s in stops if s in pending), None)
            if hit is not None:
                yield from pending[: pending.index(hit)]
                return
            if len(pending) > hold:
                yield from pending[: len(pending) - hold]
                pending = pending[len(pending) - hold :]
        yield from pending

    def generate(
        self,
        prompt: str,
        max_new_tokens: int = 100,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> str:
        """The generated continuation of `prompt` (without the prompt)."""
        _check_generation(max_new_tokens, temperature, top_k, top_p, stop)
        return "".join(self.stream(prompt, max_new_tokens, temperature, top_k, top_p, seed, stop))

    def generate_batch(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 100,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> list[str]:
        """Advance many independent streams with one batched call per step.

        Prompts of different lengths are prefilled in groups of equal length (no padding, which
        would change a recurrent state), then every stream steps together.
        """
        stops = _check_generation(max_new_tokens, temperature, top_k, top_p, stop)
        if not prompts:
            return []
        encoded = [self.encode(p) for p in prompts]
        layout = self.backend.layout
        stepper = self.backend.stepper(len(prompts))
        state = stepper.get_state()
        for length in sorted({len(e) for e in encoded}):
            rows = [i for i, e in enumerate(encoded) if len(e) == length]
            ids = np.stack([encoded[i] for i in rows])  # (rows, length)
            out = self.backend.run(
                {layout.tokens.name: layout.token_feed(ids), **layout.take_rows(state, rows)}
            )
            stepper.next_logits[rows] = layout.last_logits(out[layout.logits.name])
            layout.put_rows(state, rows, layout.state_after(out))
        stepper.set_state(state)
        check_seed(seed)
        rng = np.random.default_rng(seed)
        texts = [""] * len(prompts)
        done = [False] * len(prompts)
        for _ in range(max_new_tokens):
            tokens = sample(stepper.next_logits, temperature, top_k, top_p, rng)
            stepper.next_tokens[:] = tokens
            stepper.step()
            for i, tok in enumerate(tokens):
                if not done[i]:
                    texts[i] += self.vocab[int(tok)]
                    hit = next((s for s in stops if s in texts[i]), None)
                    if hit is not None:
                        texts[i] = texts[i][: texts[i].index(hit)]
                        done[i] = True
            if all(done):
                break
        return texts
