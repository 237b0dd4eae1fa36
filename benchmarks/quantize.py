"""Quantize every zoo model (int8 and fp16), then bench each precision in one interleaved run.

    .venv/bin/python -m benchmarks.quantize [--ckpt runs/ckpt] [--threads 1] [--readme]

Checkpoints come from --ckpt (what `make demo` writes; the charlm cells are looked up as
charlm-lstm, charlm-gru, charlm-rnn) or are trained here with the zoo's default options. Each model
is exported, `edgekit quantize` is asked for an int8 and an fp16 variant (written, refused, or "does
not pay"), and `edgekit bench` times fp32 and every variant on ONNX Runtime's CPU backend in the same
interleaved rounds, so the ratios compare like with like. Writes benchmarks/results/quantize.json,
the "Reduced precision" section of benchmarks/RESULTS.md and, with --readme, the same table in
README.md (between its quantize-table markers). Nothing in either file is edited by hand.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.sections import replace_section
from edgekit.bench.core import machine_info, run_bench
from edgekit.bench.runner import Budget

ROOT = Path(__file__).resolve().parent.parent
# name -> training options (the zoo's defaults; the charlm cells at their default 2 x 256)
MODELS: dict[str, dict[str, Any]] = {
    "linear": {"model": "linear"},
    "logistic": {"model": "logistic"},
    "lenet": {"model": "lenet"},
    "rowlstm": {"model": "rowlstm"},
    "cnn": {"model": "cnn"},
    "charlm-lstm": {"model": "charlm", "cell": "lstm"},
    "charlm-gru": {"model": "charlm", "cell": "gru"},
    "charlm-rnn": {"model": "charlm", "cell": "rnn"},
}
TARGETS = {"lstm_step": 0.6, "cnn_b1": 0.7, "int8_bytes": 0.3}


def checkpoint(name: str, options: dict[str, Any], ckpt_dir: Path | None, work: Path) -> Path:
    """`ckpt_dir/name` when it is there, else one trained now with the zoo's defaults."""
    if ckpt_dir is not None and (ckpt_dir / name).is_dir():
        return ckpt_dir / name
    from edgekit.training import TrainOptions, train

    print(f"   training {name} with the zoo's defaults", flush=True)
    ckpt, _ = train(TrainOptions(seed=0, **options), work / "ckpt" / name)
    return Path(ckpt.path)


def quantize_all(bundle: Path) -> dict[str, Any]:
    """precision -> {"outcome": written | does not pay | refused, "record" or "reason"}."""
    from edgekit.errors import CheckFailed
    from edgekit.exporters.quantize import DoesNotPay, quantize_bundle

    out: dict[str, Any] = {}
    for precision in ("int8", "fp16"):
        try:
            out[precision] = {"outcome": "written", "record": quantize_bundle(bundle, precision)}
        except DoesNotPay as exc:
            out[precision] = {"outcome": "does not pay", "reason": str(exc)}
        except CheckFailed as exc:
            out[precision] = {"outcome": "refused", "reason": str(exc)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, default=None, help="checkpoints folder (runs/ckpt)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--readme", action="store_true", help="also update README.md's table")
    ap.add_argument(
        "--render-only", action="store_true", help="re-render the last run's JSON, measure nothing"
    )
    args = ap.parse_args()
    out = ROOT / "benchmarks" / "results" / "quantize.json"
    if args.render_only:
        publish(json.loads(out.read_text()), args.readme)
        return

    from edgekit.exporters import bundle_from_checkpoint

    work = Path(tempfile.mkdtemp(prefix="edgekit-bench-quantize-"))
    models: dict[str, Any] = {}
    for name in args.models.split(","):
        print(f"== {name}: export, quantize, bench", flush=True)
        ckpt = checkpoint(name, MODELS[name], args.ckpt, work)
        bundle, _ = bundle_from_checkpoint(ckpt, work / "bundles" / name, steps=200)
        variants = quantize_all(bundle)
        batches = [1] if "charlm" in name else [1, 8]
        doc = run_bench(
            bundle,
            ["ort-cpu"],
            batches,
            Budget(warmup=20, iters=args.iters, rounds=args.rounds),
            threads=args.threads,
            cold_start=False,
        )
        rows = [{k: v for k, v in r.items() if k != "samples_us"} for r in doc["results"]]
        models[name] = {"variants": variants, "bench": rows}
    result = {
        "created": datetime.now(timezone.utc).isoformat(timespec="minutes"),
        "machine": machine_info(),
        "threads": args.threads,
        "models": models,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    publish(result, args.readme)


def publish(result: dict[str, Any], readme: bool) -> None:
    table = render_table(result)
    section = render_section(result, table)
    replace_section(ROOT / "benchmarks" / "RESULTS.md", "quantize", section)
    if readme:
        replace_section(ROOT / "README.md", "quantize-table", table)
    print(section)


def case_of(name: str) -> str:
    return "step bound B=1" if "charlm" in name else "batch 1"


def p50(rows: list[dict[str, Any]], backend: str, case: str) -> float | None:
    return next((r["p50_us"] for r in rows if r["backend"] == backend and r["case"] == case), None)


def render_table(result: dict[str, Any]) -> str:
    """One row per model and precision: outcome, size, quality against fp32 and latency."""
    lines = [
        "| model | precision | recipe | files it adds, vs the fp32 graph | quality vs fp32 (held-out) "
        "| p50 at batch 1 | vs fp32 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in result["models"].items():
        case = case_of(name)
        base = p50(m["bench"], "ort-cpu", case)
        lines.append(f"| {name} | fp32 | - | 1.00x | - | {base:.1f} us | 1.00x |")
        for precision, v in m["variants"].items():
            if v["outcome"] != "written":
                why = v["reason"].split(": ", 1)[-1].split(";")[0]
                lines.append(f"| {name} | {precision} | {v['outcome']}: {why} | - | - | - | - |")
                continue
            record = v["record"]
            mine = p50(m["bench"], f"ort-cpu {precision}", case)
            stepped = "step_file" in record  # steps on its own one-token graph
            lines.append(
                f"| {name} | {precision} | {record['recipe']['mode']}"
                + (" + step graph" if stepped else "")
                + f" | {record['bytes_ratio']:.2f}x"
                + (
                    f" in all; its step graph {record['step_bytes_ratio']:.2f}x the fp32 one"
                    + (", prompts on the fp32 graph" if "prompts" in record else "")
                    if stepped
                    else ""
                )
                + f" | {quality(record['gates'])} | {mine:.1f} us | {mine / base:.2f}x |"
            )
    return "\n".join(lines)


def quality(g: dict[str, Any]) -> str:
    if "accuracy_delta" in g:
        return (
            f"accuracy {g['accuracy_fp32']:.2%} -> {g['accuracy_variant']:.2%} "
            f"({g['held_out'].removeprefix('real data ').strip('()')})"
        )
    if "perplexity_delta" in g:
        return (
            f"perplexity {g['perplexity_fp32']:.3f} -> {g['perplexity_variant']:.3f}, "
            f"top-1 agreement {g['top1_agreement_text']:.2%}"
        )
    return f"output error {g.get('output_error', float('nan')):.2%}"


def targets(result: dict[str, Any]) -> list[str]:
    lines = ["| target | measured | met |", "|---|---|---|"]

    def ratio(name: str) -> float | None:
        m = result["models"].get(name)
        if not m or m["variants"]["int8"]["outcome"] != "written":
            return None
        base, mine = (p50(m["bench"], b, case_of(name)) for b in ("ort-cpu", "ort-cpu int8"))
        return mine / base if base and mine else None

    for name, key, label in (
        ("charlm-lstm", "lstm_step", "2x256 LSTM charlm int8 step (bound, B=1)"),
        ("cnn", "cnn_b1", "cat/dog CNN int8 at batch 1"),
    ):
        r = ratio(name)
        if r is not None:
            bar = TARGETS[key]
            lines.append(f"| {label} <= {bar}x fp32 | {r:.2f}x | {'yes' if r <= bar else 'no'} |")
    sizes = {
        n: m["variants"]["int8"]["record"]["bytes_ratio"]
        for n, m in result["models"].items()
        if m["variants"]["int8"]["outcome"] == "written"
    }
    if sizes:
        worst = max(sizes, key=lambda n: sizes[n])
        met = sizes[worst] <= TARGETS["int8_bytes"]
        lines.append(
            f"| every int8 file <= {TARGETS['int8_bytes']}x its fp32 file | largest: {worst} "
            f"{sizes[worst]:.2f}x | {'yes' if met else 'no'} |"
        )
    refused = [
        f"{n} {p}"
        for n, m in result["models"].items()
        for p, v in m["variants"].items()
        if v["outcome"] == "refused"
    ]
    lines.append(
        "| every gate met on the zoo's default models (a variant written, or it does not pay) | "
        + (f"refused: {', '.join(refused)}" if refused else "no refusals")
        + f" | {'no' if refused else 'yes'} |"
    )
    return lines


def render_section(result: dict[str, Any], table: str) -> str:
    machine = result["machine"]
    return "\n".join(
        [
            "## Reduced precision (edgekit quantize)",
            "",
            "Generated by `.venv/bin/python -m benchmarks.quantize` on "
            f"{result['created']} ({machine['cpu']}, {machine['cores']} cores; ONNX Runtime CPU, "
            f"{result['threads']} thread(s); fp32 and its variants timed in the same interleaved "
            "rounds; medians from one run). Quality is measured by `edgekit quantize` on each "
            "model's held-out split; a variant's files are its sequence graph (unless prompts stay on "
            "the fp32 one) and its step graph, each against the fp32 file it derives from.",
            "",
            *targets(result),
            "",
            table,
            "",
        ]
    )


if __name__ == "__main__":
    main()
