"""Reduced-precision variants of a bundle (int8, fp16), kept only when they pass their gates."""

from edgekit.exporters.quantize.bundle import quantize_bundle, variant_file
from edgekit.exporters.quantize.gates import BARS, Bars
from edgekit.exporters.quantize.recipes import DoesNotPay, Recipe
from edgekit.exporters.quantize.search import validate_in_subprocess

__all__ = [
    "BARS",
    "Bars",
    "DoesNotPay",
    "Recipe",
    "quantize_bundle",
    "validate_in_subprocess",
    "variant_file",
]
