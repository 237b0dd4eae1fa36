"""A rich progress bar for long runs (torch-free: used by training and by bench)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(
    total: int, description: str, enabled: bool, metric: str | None = "loss"
) -> Iterator[Callable[[float], None]]:
    """Yield `advance(value)`: one step done; with `metric`, the bar shows its running mean."""
    if not enabled:
        yield lambda value: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if metric:
        columns.append(TextColumn(f"{metric} {{task.fields[value]:.4f}}"))
    columns.append(TimeElapsedColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(description, total=total, value=float("nan"))
        running: list[float] = []

        def advance(value: float) -> None:
            running.append(value)
            window = running[-50:]
            bar.update(task, advance=1, value=sum(window) / len(window))

        yield advance


_SINKS: list[Callable[[str], None]] = []


def stage(text: str) -> None:
    """Report a stage of long work (an exporter tried, a parity case, a gate). The CLI shows it
    with the elapsed time on a terminal; a library caller, or a pipe, sees nothing."""
    for sink in _SINKS:
        sink(text)


@contextmanager
def stages(enabled: bool) -> Iterator[None]:
    """Print every `stage` on stderr as `[  12.3 s] text` while the block runs, when `enabled`
    (a terminal, or EDGEKIT_PROGRESS=1 for logs)."""
    import os
    import sys
    import time

    if not (enabled or os.environ.get("EDGEKIT_PROGRESS") == "1"):
        yield
        return
    start = time.monotonic()

    def sink(text: str) -> None:
        sys.stderr.write(f"[{time.monotonic() - start:7.1f} s] {text}\n")
        sys.stderr.flush()

    _SINKS.append(sink)
    try:
        yield
    finally:
        _SINKS.remove(sink)
