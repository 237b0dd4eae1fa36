"""The seed model zoo. `registry` is torch-free; the model modules import torch."""

from edgekit.models.registry import MODELS, ModelEntry, get_model

__all__ = ["MODELS", "ModelEntry", "get_model"]
