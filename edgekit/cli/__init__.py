"""The `edgekit` command line: one module per command group, each command a thin function over the
library with its heavy imports inside. `app.py` holds the shared error handling and output helpers.
"""

from __future__ import annotations

from edgekit.cli.app import app, main

# Each module registers its commands on import; this order is the order `edgekit --help` lists them.
# isort: off
from edgekit.cli import train, export, quantize, run, tensors, bench, serve, triton  # noqa: F401
# isort: on

__all__ = ["app", "main"]
