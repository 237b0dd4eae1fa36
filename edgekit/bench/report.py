"""Bench reports: terminal table, markdown, JSON and an optional PNG of the latency distributions."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from edgekit.errors import InputError
from edgekit.files import atomic_write

COLUMNS = [
    "backend",
    "case",
    "p50 us [95% CI]",
    "p90 us",
    "p95 us",
    "p99 us",
    "p99.9 us",
    "min us",
    "items/s",
    "vs torch",
    "vs floor",
    "of FMA peak",
    "quality vs fp32",
    "note",
]
NARROW = ["backend", "case", "p50 us", "p99 us", "items/s", "vs torch", "vs floor",
          "quality vs fp32", "note"]  # fmt: skip
LEGEND = """\
p50, p99: median and 99th percentile latency of one call; items/s: items per call (batch, or
tokens for a step / prefill) x 1e6 / p50, i.e. throughput at the median; vs torch: torch's p50 over
this row's (above 1x: faster than PyTorch); vs floor: a recurrent step's p50 over the numpy-floor
row's, the same step written with numpy alone (below 1x: faster than that floor); of FMA peak:
the share of the fused multiply-add peak of the cores the row could use, at its precision (int8:
VNNI's rate), that the step reaches; step bound B=N: N streams
advanced one token per call with state kept between calls (step host: state through the host);
noisy: coefficient of variation above 0.25, trust the median. --wide shows every percentile, the
confidence interval of p50, and FMA peak; the JSON document has the samples."""


def items_per_s(r: dict[str, Any]) -> float:
    """Throughput at the median, so it agrees with the p50 shown beside it."""
    return float(r["items_per_call"]) * 1e6 / r["p50_us"] if r["p50_us"] else 0.0


def _row(r: dict[str, Any], wide: bool = True) -> list[str]:
    speed = f"{r['speedup_vs_torch']:.2f}x" if r.get("speedup_vs_torch") else "-"
    lo, hi = r.get("p50_ci95_us") or (r["p50_us"], r["p50_us"])
    cells = {
        "backend": r["backend"],
        "case": r["case"],
        "p50 us [95% CI]": f"{r['p50_us']:.1f} [{lo:.1f}, {hi:.1f}]",
        "p50 us": f"{r['p50_us']:.1f}",
        "p90 us": f"{r['p90_us']:.1f}",
        "p95 us": f"{r['p95_us']:.1f}",
        "p99 us": f"{r['p99_us']:.1f}",
        "p99.9 us": f"{r['p99_9_us']:.1f}",
        "min us": f"{r['min_us']:.1f}",
        "items/s": f"{items_per_s(r):.4g}",
        "vs torch": speed,
        "vs floor": f"{r['vs_floor']:.2f}x" if r.get("vs_floor") else "-",
        "of FMA peak": f"{r['of_peak']:.1%}" if r.get("of_peak") else "-",
        "quality vs fp32": r.get("quality") or "",
        "note": "noisy" if r["noisy"] else "",
    }
    return [cells[c] for c in (COLUMNS if wide else NARROW)]


def _backend_rows(doc: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, s in doc["backends"].items():
        if s["status"] != "ok":
            rows.append([name, s["status"], s.get("reason", ""), "", "", ""])
            continue
        cold = f"{s['cold_start_ms']:.1f}" if s.get("cold_start_ms") is not None else "-"
        rss = f"{s['peak_rss_mb']:.0f}" if s.get("peak_rss_mb") is not None else "-"
        size = f"{s['model_bytes'] / 1024:.1f}" if s.get("model_bytes") else "-"
        rows.append([name, "ok", s.get("cold_start_error", ""), cold, rss, size])
    return rows


BACKEND_COLUMNS = ["backend", "status", "note", "cold start ms", "peak RSS MB", "model KiB"]


def print_report(doc: dict[str, Any], wide: bool = False) -> None:
    """The results as a table on the terminal: the columns most runs need, with a legend, or
    with `wide` every column."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # logs and pipes: do not squeeze the table into 80 columns
    title = f"{doc['model']['name']} ({doc['task']}) on {doc['machine']['cpu']}"
    columns = COLUMNS if wide else NARROW
    rows = [dict(zip(columns, _row(r, wide), strict=True)) for r in doc["results"]]
    # the narrow table leaves out a column no row fills (vs floor for a classifier, ...)
    shown = [c for c in columns if wide or any(row[c] not in ("", "-") for row in rows)]
    table = Table(*shown, title=title)
    for row in rows:
        table.add_row(*(Text(row[c]) for c in shown))  # Text: no rich markup in cells
    console.print(table)
    backends = Table(*BACKEND_COLUMNS, title="backends")
    for cells in _backend_rows(doc):
        if not wide and len(cells[2]) > 70:  # a skipped backend's reason, in short
            cells = [cells[0], cells[1], cells[2][:67] + "...", *cells[3:]]
        backends.add_row(*(Text(c) for c in cells))
    console.print(backends)
    if not wide:
        console.print(LEGEND, highlight=False)
    if any(r["noisy"] for r in doc["results"]):
        console.print(
            "warning: some rows have a coefficient of variation > 0.25: the machine was busy; "
            "trust the medians, rerun for the tails"
        )


def markdown(doc: dict[str, Any]) -> str:
    def table(cols: list[str], rows: list[list[str]]) -> list[str]:
        return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] + [
            "| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows
        ]

    s = doc["settings"]
    lines = [
        f"### {doc['model']['name']} ({doc['task']})",
        "",
        f"{doc['machine']['cpu']}, {doc['machine']['cores']} cores; {doc['created']}; "
        f"warm-up {s['warmup_s'] or s['warmup']}{' s' if s['warmup_s'] else ''}, "
        f"{s['duration_s'] or s['iters']}{' s' if s['duration_s'] else ' iterations'} per case in "
        f"{s['rounds']} interleaved rounds, threads {s['threads'] or 'default'}; versions "
        + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()),
        "",
        *table(COLUMNS, [_row(r) for r in doc["results"]]),
        "",
        *table(BACKEND_COLUMNS, _backend_rows(doc)),
        "",
    ]
    return "\n".join(lines)


def check_output_path(path: Path | None, flag: str) -> None:
    if path is None:
        return
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{flag} {path}: the folder {parent} does not exist")
    if path.is_dir():
        raise InputError(f"{flag} {path} is a directory; give a file name")
    try:  # really try: permission bits say nothing for root or on read-only file systems
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"{flag} {path}: cannot write in {parent} ({exc.strerror})") from None


def write_json(doc: dict[str, Any], path: Path) -> None:
    atomic_write(path, json.dumps(doc, indent=1) + "\n")


def write_markdown(doc: dict[str, Any], path: Path) -> None:
    atomic_write(path, markdown(doc))


def write_plot(doc: dict[str, Any], path: Path) -> None:
    """One panel per case: the latency distribution of every backend (box plot, log scale)."""
    from edgekit._optional import require

    require("matplotlib", "--plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(
        dict.fromkeys(r["case"].replace("bound ", "").replace("host ", "") for r in doc["results"])
    )
    fig, axes = plt.subplots(
        len(cases), 1, figsize=(8, 1.2 + 1.1 * len(cases) * 1.6), squeeze=False
    )
    for ax, case in zip(axes[:, 0], cases, strict=True):
        rows = [
            r
            for r in doc["results"]
            if r["case"].replace("bound ", "").replace("host ", "") == case
        ]
        ax.boxplot(
            [r["samples_us"] for r in rows],
            orientation="horizontal",
            showfliers=False,
            tick_labels=[f"{r['backend']} {r['case']}" for r in rows],
        )
        ax.set_xscale("log")
        ax.set_title(case, fontsize=9)
        ax.tick_params(labelsize=8)
    axes[-1, 0].set_xlabel("latency per call (us, log scale)")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, png.getvalue())
