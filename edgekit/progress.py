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
