"""One per-step loop behind every way of generating: pick the next tokens, feed them back, watch
for stop strings.

`GenerationSession.step`, `Generator.stream`, `generate` and `generate_batch` all advance a
`Decoder`, so they cost the same per token. With greedy picking a step allocates no arrays: argmax
writes straight into the stepper's bound token buffer, the token is copied into a preallocated
ring, and the stop check is one table lookup into a preallocated flag row; a full suffix comparison
runs only for a stream whose token ends some stop string.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgekit.bundle.vocab import Vocabulary
from edgekit.errors import InputError
from edgekit.rollout import Rollout, Stepper
from edgekit.runtimes.sampling import check_sampling, check_seed, sample

NO_HITS: tuple[tuple[int, int], ...] = ()
MAX_HELD_TOKENS = 1_000_000  # generate() and generate_batch() keep all text; stream() does not


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def pick(self, logits: np.ndarray, out: np.ndarray, rng: np.random.Generator) -> None:
        """Write one token id per row of `logits` (B, V) into `out` (B,)."""
        if self.temperature == 0:
            np.argmax(logits, axis=-1, out=out)
        else:
            out[...] = sample(logits, self.temperature, self.top_k, self.top_p, rng)


@dataclass(frozen=True)
class Generation:
    """How to generate, as one value: how many tokens, how to pick them, where to stop. The CLI,
    the server and the Generator's keyword arguments all build one."""

    max_new_tokens: int = 100
    sampling: Sampling = Sampling()
    seed: int | None = None
    stop: str | Sequence[str] | None = None

    def stops(self, streaming: bool = False) -> list[str]:
        """Validate the options; return the stop strings as a list."""
        s = self.sampling
        check_sampling(s.temperature, s.top_k, s.top_p)
        check_seed(self.seed)
        if self.max_new_tokens < 0:
            raise InputError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if self.max_new_tokens > MAX_HELD_TOKENS and not streaming:
            raise InputError(
                f"max_new_tokens {self.max_new_tokens} is more than generate() holds in memory "
                f"({MAX_HELD_TOKENS}); use stream() (the CLI's --stream) for longer runs"
            )
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if any(not s for s in stops):
            raise InputError("stop strings must not be empty")
        return stops


class StopMatcher:
    """Which streams just completed a stop string, from the token ids they produced.

    The last `window` tokens of every stream sit in a ring (B, window). A stop string can only
    complete on a token that ends one, so each step first looks the new tokens up in a (V,) table;
    only streams whose token ends a stop are compared in full. A vocabulary whose entries are not
    all single characters is matched on text instead (a stop string may then span tokens).
    """

    def __init__(self, stops: Sequence[str], vocab: Vocabulary | Sequence[str], batch: int) -> None:
        vocabulary = vocab if isinstance(vocab, Vocabulary) else Vocabulary(vocab)
        self.vocab = vocabulary.tokens
        self.by_chars = vocabulary.by_chars or not vocabulary  # no tokens: nothing to match
        index = vocabulary.index
        if self.by_chars:  # a stop with a character outside the vocabulary can never be produced
            seqs = [[index[c] for c in s] for s in stops if all(c in index for c in s)]
            self.window = max((len(s) for s in seqs), default=1)
        else:  # enough tokens (each at least one character) to hold the longest stop
            seqs = []
            self.window = max((len(s) for s in stops), default=1)
        self.stops = list(stops)
        self.ends_a_stop = np.zeros(len(self.vocab), bool)
        self.by_last: dict[int, list[list[int]]] = {}  # final token -> stops, longest first
        for seq in sorted(seqs, key=len, reverse=True):
            self.ends_a_stop[seq[-1]] = True
            self.by_last.setdefault(seq[-1], []).append(seq)
        if not self.by_chars and stops:
            self.ends_a_stop[:] = True  # any token may complete a stop
        self.history = np.zeros((batch, self.window), np.int64)  # ring of each stream's tokens
        self.flag = np.zeros(batch, bool)
        self.count = 0  # tokens produced per stream (all streams advance together)
        self.active = bool(self.by_last) or (not self.by_chars and bool(stops))

    def recent(self, stream: int, n: int) -> list[int]:
        """The last `n` tokens of `stream` (n <= window and <= count), oldest first."""
        return [int(self.history[stream, (self.count - n + k) % self.window]) for k in range(n)]

    def push(self, tokens: np.ndarray) -> tuple[tuple[int, int], ...]:
        """Record this step's tokens (B,); return (stream, characters to drop) for each stream
        whose text now ends inside a stop string: the text ends before the stop's first char."""
        self.count += 1
        if not self.active:  # nothing to match, nothing held back: the ring is never read
            return NO_HITS
        self.history[:, (self.count - 1) % self.window] = tokens
        np.take(self.ends_a_stop, tokens, out=self.flag)
        if not self.flag.any():
            return NO_HITS
        hits = []
        for stream in np.flatnonzero(self.flag):
            drop = self._drop(int(stream), int(tokens[stream]))
            if drop:
                hits.append((int(stream), drop))
        return tuple(hits)

    def _drop(self, stream: int, token: int) -> int:
        if self.by_chars:  # the longest stop that is a suffix of the stream's tokens
            for seq in self.by_last.get(token, ()):
                n = len(seq)
                if n <= self.count and self.recent(stream, n) == seq:
                    return n
            return 0
        # text vocabulary: the earliest stop occurrence that the newest token completes
        tail = "".join(self.vocab[t] for t in self.recent(stream, min(self.window, self.count)))
        newest = len(self.vocab[token])
        starts = [
            at
            for s in self.stops
            if (at := tail.find(s, max(0, len(tail) - newest - len(s) + 1))) >= 0
        ]
        return len(tail) - min(starts) if starts else 0


class Decoder:
    """The one rollout (edgekit.rollout) with sampled choices and stop strings: over a stepper
    whose logits are ready, `advance()` picks every stream's next token, feeds it back (one call)
    and returns the stop hits. The picked tokens stay in `tokens` (B,)."""

    def __init__(
        self,
        stepper: Stepper,
        sampling: Sampling,
        rng: np.random.Generator,
        stops: Sequence[str] = (),
        vocab: Vocabulary | Sequence[str] = (),
    ) -> None:
        self.stepper, self.sampling, self.rng = stepper, sampling, rng
        self.rollout = Rollout(stepper, self._pick)
        self.tokens = self.rollout.tokens  # (B,) view of the bound token buffer
        self.matcher = StopMatcher(stops, vocab, stepper.batch)

    def _pick(self, logits: np.ndarray, out: np.ndarray) -> None:
        self.sampling.pick(logits, out, self.rng)  # the sampling may change between steps

    def advance(self) -> tuple[tuple[int, int], ...]:
        self.rollout.advance()
        return self.matcher.push(self.tokens)
