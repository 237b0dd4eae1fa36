"""Build a recipe, open it in a subprocess, gate it; on a miss, retry with sensitive nodes in float."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.directory import Bundle
from edgekit.bundle.io import IOContract
from edgekit.bundle.manifest import Manifest
from edgekit.errors import CheckFailed
from edgekit.exporters.quantize import gates as gates_mod
from edgekit.exporters.quantize import recipes
from edgekit.exporters.samples import Split
from edgekit.progress import stage
from edgekit.runtimes.onnxruntime import OPTIMIZATION_LEVELS, OrtBackend

MAX_FALLBACK = 3  # most sensitive nodes tried in float before refusing


class Job:
    """One quantize run: builds recipes into `out`, opens them in a subprocess, measures gates."""

    def __init__(
        self,
        bundle: Path,
        manifest: Manifest,
        parent: Path,
        model: Any,
        contract: IOContract,
        split: Split | None,
        batches: list[dict[str, np.ndarray]],
        bars: gates_mod.Bars,
        out: Path,
    ) -> None:
        self.bundle, self.manifest, self.parent, self.model = bundle, manifest, parent, model
        self.contract, self.split, self.batches, self.bars, self.out = (
            contract,
            split,
            batches,
            bars,
            out,
        )
        # a recurrent bundle that steps on a one-token graph gets that graph's variant too: its
        # MatMuls quantize even where the RNN/GRU ops of the sequence graph cannot
        step = Bundle(bundle, manifest).any_step_graph
        self.step_source: Path | None = None
        self.step_out = out.with_name(out.name.replace("model.", "model.step.", 1))
        if step is not None:
            self.step_source, _ = recipes.prepare(step, out.with_name("step.source.onnx"))

    def attempt(self, recipe: recipes.Recipe) -> dict[str, Any]:
        kept = f", {len(recipe.exclude)} nodes kept in float" if recipe.exclude else ""
        stage(f"{recipe.precision} {recipe.mode}{kept}: building")
        recipes.build(recipe, self.parent, self.out, self.batches)
        levels = [validate_in_subprocess(self.out)]
        if self.step_source is not None:
            step_recipe = replace(
                recipe, mode="dynamic" if recipe.precision == "int8" else recipe.mode, exclude=()
            )
            recipes.build(step_recipe, self.step_source, self.step_out)
            levels.append(validate_in_subprocess(self.step_out))
        optimization = max(levels, key=list(OPTIMIZATION_LEVELS).index)  # what opens both
        return {**self.measure(optimization), "optimization": optimization}

    def measure(self, optimization: str) -> dict[str, Any]:
        stage(f"gates: held-out quality and speed against fp32 (ORT level {optimization})")
        return gates_mod.measure(
            self.bundle,
            self.manifest,
            self.out,
            self.split,
            self.bars,
            optimization,
            self.variant_step,
        )

    @property
    def variant_step(self) -> Path | None:
        return self.step_out if self.step_source is not None else None

    def search(
        self, recipe: recipes.Recipe, keep_failing: bool
    ) -> tuple[recipes.Recipe, dict[str, Any], list[str]]:
        """The recipe as asked; if it misses a gate, the same with the 1..MAX_FALLBACK most
        sensitive nodes in float. Nothing passing and `keep_failing`: the recipe as asked."""
        gates = self.attempt(recipe)
        if gates["passed"]:
            return recipe, gates, []
        asked = self.out.with_name(self.out.name + ".asked")
        shutil.copy2(self.out, asked)
        ranked = _sensitivity(
            recipe,
            self.model,
            self.parent,
            self.out.parent,
            self.batches,
            self.contract,
            self.split,
        )
        tried: list[str] = []
        for keep in range(1, min(MAX_FALLBACK, len(ranked) - 1) + 1):
            tried = ranked[:keep]
            retry = recipes.excluding(recipe, tried)
            retry_gates = self.attempt(retry)
            if retry_gates["passed"]:
                return retry, retry_gates, tried
        if keep_failing:
            shutil.copy2(asked, self.out)
        return recipe, gates, tried


def validate_in_subprocess(graph: Path) -> str:
    """The highest ORT optimisation level that opens `graph`, tried in a child process each:
    an ONNX Runtime crash there (a segfault) is a message, not a dead edgekit."""
    code = (
        "import sys, onnxruntime as ort; so = ort.SessionOptions(); "
        "so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, sys.argv[2]); "
        "ort.InferenceSession(sys.argv[1], so, providers=['CPUExecutionProvider'])"
    )
    tried = []
    for name in ("all", "basic"):
        level = OPTIMIZATION_LEVELS[name]
        done = subprocess.run(
            [sys.executable, "-c", code, str(graph), level],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode == 0:
            return name
        crash = f"crashed (signal {-done.returncode})" if done.returncode < 0 else "failed"
        tail = (done.stderr.strip().splitlines() or [""])[-1]
        tried.append(f"{crash} with {name} optimisations" + (f": {tail}" if tail else ""))
    raise CheckFailed(
        "ONNX Runtime cannot open the derived graph (checked in a subprocess): " + "; ".join(tried)
    )


def _sensitivity(
    recipe: recipes.Recipe,
    model: Any,
    parent: Path,
    scratch: Path,
    batches: list[dict[str, np.ndarray]],
    contract: IOContract,
    split: Split | None,
) -> list[str]:
    """Node names, most sensitive first: each quantized alone, scored by how far the outputs move."""
    nodes = [n.name for n in recipes.weighted_nodes(model)]
    probe = batches[0] if batches else None
    if probe is None:
        if split is None:
            return []
        probe = {k: v[:16] for k, v in (split.test | contract.zero_state(1)).items()}
    fp32 = OrtBackend(parent, contract).run(
        probe
    )  # probes open at "basic": see OPTIMIZATION_LEVELS
    first = contract.outputs[0].name
    score = {}
    for node in nodes:
        alone = recipes.excluding(recipe, [n for n in nodes if n != node])
        path = scratch / "alone.onnx"
        try:
            recipes.build(alone, parent, path, batches)
            got = OrtBackend(path, contract, optimization="basic").run(probe)[first]
        except Exception:  # a node that cannot be quantized alone is not a candidate
            continue
        score[node] = float(
            np.linalg.norm(got - fp32[first]) / max(float(np.linalg.norm(fp32[first])), 1e-12)
        )
    return sorted(score, key=lambda n: -score[n])
