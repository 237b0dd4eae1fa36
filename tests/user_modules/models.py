"""Ordinary modules a user brings, one per pattern: recurrent language models in several layouts,
text and audio classifiers, a vision net, a transformer encoder, and modules with unusual outputs.
Each is small so the whole catalogue exports in seconds."""

from __future__ import annotations

import torch
from torch import nn

V, H = 12, 16  # vocabulary and hidden sizes of the language models
CHARS = list("abcdefghij .")


class LSTMLM(nn.Module):
    """Batch-major: tokens (B, T), h, c (L, B, H) -> logits (B, T, V), h, c."""

    def __init__(self, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(V, H)
        self.rnn = nn.LSTM(H, H, num_layers=layers, batch_first=True)
        self.head = nn.Linear(H, V)

    def forward(self, tokens, h, c):
        y, (h, c) = self.rnn(self.embed(tokens), (h, c))
        return self.head(y), h, c


class TimeMajorLSTMLM(nn.Module):
    """Time-major: tokens (T, B), h, c (1, B, H) -> logits (T, B, V), (h, c) nested."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(V, H)
        self.rnn = nn.LSTM(H, H)  # batch_first=False
        self.head = nn.Linear(H, V)

    def forward(self, tokens, state):
        y, state = self.rnn(self.embed(tokens), state)
        return self.head(y), state


class GRULM(nn.Module):
    """tokens (B, T), h (L, B, H) -> {"logits": (B, T, V), "h": (L, B, H)} (a dict output)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(V, H)
        self.rnn = nn.GRU(H, H, num_layers=2, batch_first=True)
        self.head = nn.Linear(H, V)

    def forward(self, tokens, h):
        y, h = self.rnn(self.embed(tokens), h)
        return {"logits": self.head(y), "h": h}


class RNNLM(nn.Module):
    """One-hot input, tanh RNN, sequence axis named "seq": tokens (B, S), h (1, B, H)."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(V, H, batch_first=True)
        self.head = nn.Linear(H, V)

    def forward(self, tokens, h):
        x = nn.functional.one_hot(tokens, V).float()
        y, h = self.rnn(x, h)
        return self.head(y), h


class CellLoopLM(nn.Module):
    """An unscripted Python loop over nn.LSTMCell; state (B, H), batch on axis 0."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(V, H)
        self.cell = nn.LSTMCell(H, H)
        self.head = nn.Linear(H, V)

    def forward(self, tokens: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        x = self.embed(tokens)  # (B, T, H)
        outs = []
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
            outs.append(self.head(h))
        return torch.stack(outs, 1), h, c


class ProjLSTMLM(nn.Module):
    """nn.LSTM(proj_size=8): h is (L, B, 8), c is (L, B, H)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(V, H)
        self.rnn = nn.LSTM(H, H, proj_size=8, batch_first=True)
        self.head = nn.Linear(8, V)

    def forward(self, tokens, h, c):
        y, (h, c) = self.rnn(self.embed(tokens), (h, c))
        return self.head(y), h, c


class BiLSTMClassifier(nn.Module):
    """Token ids (B, T) with padding_idx 0 -> 3 class logits; a bidirectional LSTM, mean-pooled."""

    def __init__(self, vocab: int = 50) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 16, padding_idx=0)
        self.rnn = nn.LSTM(16, 16, batch_first=True, bidirectional=True)
        self.head = nn.Linear(32, 3)

    def forward(self, ids):
        y, _ = self.rnn(self.embed(ids))
        return self.head(y.mean(1))


class BiGRUTagger(nn.Module):
    """Bidirectional GRU sequence model: per-token tag logits (B, T, 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(30, 16)
        self.rnn = nn.GRU(16, 16, batch_first=True, bidirectional=True)
        self.head = nn.Linear(32, 5)

    def forward(self, ids):
        y, _ = self.rnn(self.embed(ids))
        return self.head(y)


class TransformerClassifier(nn.Module):
    """ids (B, T) and an attention mask (B, T) of 0/1 -> 2 class logits."""

    def __init__(self, vocab: int = 40) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 32)
        layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(32, 2)

    def forward(self, ids, mask):
        y = self.encoder(self.embed(ids), src_key_padding_mask=mask == 0)
        keep = mask.unsqueeze(-1).float()
        return self.head((y * keep).sum(1) / keep.sum(1).clamp(min=1.0))


class AudioConvNet(nn.Module):
    """Waveform features (B, 1, S) -> 4 class logits; two unpadded convolutions need S >= 5."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(1, 8, 3), nn.ReLU(), nn.Conv1d(8, 8, 3), nn.ReLU())
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.conv(x).amax(-1))


class VisionNet(nn.Module):
    """Images (B, 3, 32, 32) -> {"logits": (B, 10), "features": (B, 16)}."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        f = self.body(x)
        return {"logits": self.head(f), "features": f}


class TwoHeads(nn.Module):
    """A dict input {"a": (B, 4), "b": (B, 6)} -> a nested tuple (score, (mean, spread))."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(6, 3)

    def forward(self, batch):
        z = self.a(batch["a"]) + self.b(batch["b"])
        return z.sum(-1, keepdim=True), (z.mean(-1), z.std(-1))


class Regressor(nn.Module):
    """An MLP regressor: (B, 5) -> (B, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, x):
        return self.net(x)


class PythonValues(nn.Module):
    """Computes on Python numbers read out of the tensor: no exporter can follow it."""

    def forward(self, x):
        values = [v * 2.0 + 1.0 for v in x.flatten().tolist()]
        return torch.tensor(values).reshape(x.shape)
