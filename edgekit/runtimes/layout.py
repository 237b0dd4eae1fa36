"""The layout view of a recurrent bundle's I/O (kept for older imports: it lives in edgekit.bundle.io)."""

from edgekit.bundle.layout import Layout, StateSlot, last_step

__all__ = ["Layout", "StateSlot", "last_step"]
