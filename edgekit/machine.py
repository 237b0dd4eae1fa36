"""Facts about the machine a measurement ran on (torch-free)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it ("unknown" where nothing says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def l2_cache_bytes() -> int | None:
    """The size of one core's L2 cache, as Linux's sysfs reports it (None where nothing says)."""
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()  # "2048K", "1M"
        except OSError:
            continue
        if level == "2" and kind in ("Unified", "Data"):
            units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
            scale = units.get(size[-1:].upper(), 1)
            digits = size[:-1] if size[-1:].upper() in units else size
            return int(digits) * scale if digits.isdigit() else None
    return None
