"""Character language models: nn.RNN / nn.LSTM / nn.GRU, and the seeds' hand-written cells.

Every variant has the same contract, the one the exporters and runtimes rely on:
`forward(tokens (B, T) int64, state) -> (logits (B, T, V), new_state)` where state is a tuple of
(L, B, H) tensors, ("h",) or ("h", "c") by cell. State is explicit so one graph serves prompt prefill
(T = len(prompt)) and one-token steps (T = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.models.registry import CELLS


def state_names(cell: str) -> tuple[str, ...]:
    return ("h", "c") if cell in ("lstm", "scratch-lstm") else ("h",)


@dataclass(frozen=True)
class CharLMConfig:
    vocab_size: int = 0  # characters in the vocabulary (set from the corpus)
    cell: str = "lstm"  # one of CELLS
    layers: int = 2  # stacked recurrent layers; layer k's output at step t feeds layer k+1 at t
    hidden: int = 256  # hidden units per layer
    embed: int = 0  # 0: one-hot input, as the seeds; > 0: a learned embedding of this width

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; known cells: {', '.join(CELLS)}")


class ScratchRNNLayer(nn.Module):
    """The seeds' SimpleRNN cell: h' = tanh(W [x, h] + b), one Linear over the concatenation."""

    def __init__(self, input_size: int, hidden: int) -> None:
        super().__init__()
        self.i2h = nn.Linear(input_size + hidden, hidden)

    def forward(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # x: (B, T, I); h: (B, H); c is unused (keeps one signature for both scratch layers)
        outputs = []
        for t in range(x.shape[1]):
            h = torch.tanh(self.i2h(torch.cat([x[:, t], h], dim=1)))
            outputs.append(h)
        return torch.stack(outputs, dim=1), h, c  # (B, T, H), (B, H), (B, H)


class ScratchLSTMLayer(nn.Module):
    """The seeds' CustomLSTM cell: the four gates from one Linear over concat[h, x]."""

    def __init__(self, input_size: int, hidden: int) -> None:
        super().__init__()
        self.gates = nn.Linear(hidden + input_size, 4 * hidden)

    def forward(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # x: (B, T, I); h, c: (B, H)
        outputs = []
        for t in range(x.shape[1]):
            z = self.gates(torch.cat([h, x[:, t]], dim=1))  # (B, 4H)
            f, i, g, o = z.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs, dim=1), h, c


_TORCH_RNNS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
_SCRATCH = {"scratch-rnn": ScratchRNNLayer, "scratch-lstm": ScratchLSTMLayer}


class CharLM(nn.Module):
    def __init__(self, config: CharLMConfig) -> None:
        super().__init__()
        self.config = config
        v, h = config.vocab_size, config.hidden
        self.embedding = nn.Embedding(v, config.embed) if config.embed > 0 else None
        width = config.embed if config.embed > 0 else v
        self.rnn: nn.Module | None = None
        self.cells = nn.ModuleList()
        if config.cell in _TORCH_RNNS:
            self.rnn = _TORCH_RNNS[config.cell](width, h, config.layers, batch_first=True)
        else:
            layer = _SCRATCH[config.cell]
            self.cells.extend(layer(width if k == 0 else h, h) for k in range(config.layers))
        self.head = nn.Linear(h, v)

    def initial_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        shape = (self.config.layers, batch, self.config.hidden)
        return tuple(torch.zeros(shape) for _ in state_names(self.config.cell))

    def forward(
        self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        # tokens: (B, T) int64; state: ("h",) or ("h", "c"), each (L, B, H)
        if state is None:
            state = tuple(s.to(tokens.device) for s in self.initial_state(tokens.shape[0]))
        if self.embedding is not None:
            x = self.embedding(tokens)  # (B, T, E)
        else:
            x = F.one_hot(tokens, self.config.vocab_size).to(self.head.weight.dtype)  # (B, T, V)
        if self.rnn is not None:
            rnn_state = state if len(state) == 2 else state[0]
            out, new = self.rnn(x, rnn_state)  # out: (B, T, H)
            new_state = tuple(new) if isinstance(new, tuple) else (new,)
        else:
            out, new_state = self._run_scratch(x, state)
        return self.head(out), new_state  # (B, T, V)

    def _run_scratch(
        self, x: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        h_all = state[0]
        c_all = state[1] if len(state) == 2 else state[0]
        hs, cs = [], []
        for k, cell in enumerate(self.cells):
            x, h, c = cell(x, h_all[k], c_all[k])
            hs.append(h)
            cs.append(c)
        new_state = (torch.stack(hs),) + ((torch.stack(cs),) if len(state) == 2 else ())
        return x, new_state
