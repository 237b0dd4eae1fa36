"""Audio front ends on complex numbers, which ONNX has no type for."""

from __future__ import annotations

import torch
from torch import nn


class Spectrogram(nn.Module):
    """A stock magnitude spectrogram: waveform (B, S) -> |STFT| (B, 33, frames). torch.export
    (dynamo) translates it; the TorchScript exporters refuse the complex STFT."""

    def forward(self, x):
        return torch.stft(x, n_fft=64, return_complex=True).abs()


class PhaseShift(nn.Module):
    """Complex arithmetic after the STFT (a phase rotation by 1j): every exporter refuses it."""

    def forward(self, x):
        spec = torch.stft(x, n_fft=64, return_complex=True)
        return (spec * torch.exp(1j * spec.angle())).real


# `edgekit export --module FILE.py:make` of the same front end
FACTORY = """
import torch
from torch import nn


class Spectrogram(nn.Module):
    def forward(self, x):
        return torch.stft(x, n_fft=64, return_complex=True).abs()


def make():
    return {"module": Spectrogram(), "example_inputs": torch.randn(2, 400)}
"""
