"""The bundle manifest (`edgekit.json`) as types: one frozen dataclass per part, read and written here.

Torch-free: every reader takes a `Manifest`; nobody outside `edgekit.bundle` reads the document by
key. A document is validated before anything in it is trusted: one InputError lists every problem
(missing keys, wrong types, paths). Every file the manifest names (the graph, engines, variants,
golden records, the step graph) must be a plain file name inside the bundle, listed in `files`, and
is hash-checked with the rest. Keys a newer writer added survive a read and a rewrite (`extra`).

Schema (version 1), as `to_json` writes it:

    schema, schema_version      "edgekit.bundle", 1
    task                        "classify" | "regress" | "generate" | "generic"
    model                       {"name", "config"}
    graph                       file name of the fp32 ONNX graph ("model.onnx")
    inputs / outputs / axes     the I/O contract (edgekit.bundle.io); symbolic dims are strings
    state, token_input          recurrent bundles: [{"input", "output", "shape", "batch_axis", "init"}]
    head                        classify: "probability" (one sigmoid output, P(class 1)) | "logits"
    labels / vocab / preprocess / columns / input_tree   as recorded at export
    files                       {name: {"sha256", "bytes"}} for every file in the bundle but this one
    source                      {"checkpoint", "sha256", "data", "metrics"} or {"module", "sha256"}
    exporter                    {"name", "opset", "requested", "attempts"}
    tolerance                   {"atol", "rtol"}
    parity                      the parity report measured at export (+ "real_data_note")
    golden                      {"file", "cases", "rollout": {"steps"}, "bytes"}
    step_graph                  {"used", "file", "why", ...} (zoo language models)
    variants                    [{"precision", "file", "tolerance", "optimization", "case_atol",
                                  "step_file", "gates", "forced", ...}] (edgekit quantize)
    engines                     [{"file", "gpu", "compute_capability", "tensorrt", "max_batch",
                                  "max_seq", "fp16", "parity", ...}] (edgekit export --tensorrt)
    versions, created           tool versions and time at export
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgekit.bundle.io import IOContract
from edgekit.bundle.parts import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    Engine,
    ExporterRecord,
    FileRecord,
    Golden,
    GoldenCase,
    ParityRecord,
    Source,
    StepGraph,
    Tolerance,
    Variant,
)
from edgekit.bundle.validate import problems
from edgekit.bundle.vocab import Vocabulary
from edgekit.errors import InputError

SCHEMA = "edgekit.bundle"
SCHEMA_VERSION = 1
GRAPH = "model.onnx"  # the fp32 graph export writes

PRECISIONS = ("fp32", "int8", "fp16", "bf16", "auto")  # what `load` and `serve` accept


@dataclass(frozen=True)
class Manifest:
    """A bundle's manifest. `at(precision, device)` gives the view a backend runs."""

    task: str
    graph: str  # the ONNX graph a backend opens (a variant's file in a view at its precision)
    contract: IOContract
    tolerance: Tolerance = field(default_factory=Tolerance)
    files: Mapping[str, FileRecord] = field(default_factory=dict)
    model: str = ""  # zoo model name, or the user module's class
    model_config: Mapping[str, Any] | None = None
    head: str | None = None  # classify: "probability" | "logits"
    labels: tuple[str, ...] | None = None
    vocab: tuple[str, ...] | None = None  # the token of each id (language models)
    preprocess: Mapping[str, Any] | None = None  # image preprocessing, as the runtime applies it
    columns: tuple[str, ...] | None = None  # tabular models: feature names
    input_tree: str | None = None  # user modules: how flat inputs nest (torch pytree spec)
    source: Source | None = None
    exporter: ExporterRecord | None = None
    parity: ParityRecord | None = None
    golden: Golden | None = None
    step_graph: StepGraph | None = None
    variants: tuple[Variant, ...] = ()
    engines: tuple[Engine, ...] = ()
    versions: Mapping[str, str] = field(default_factory=dict)
    created: str = ""
    # a view at a precision (Manifest.at): what the backend runs and how check judges it
    precision: str = "fp32"
    optimization: str = "all"
    case_atol: Mapping[str, float] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys this edgekit does not know

    # ---- reading and writing -------------------------------------------------------------------

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], bundle: Path | None = None) -> Manifest:
        """Validate `doc` (one InputError listing every problem), then build the typed manifest."""
        found = problems(doc, bundle)
        if found:
            where = f"{bundle}: " if bundle is not None else ""
            raise InputError(f"{where}invalid manifest: " + "; ".join(found))
        model = doc.get("model") or {}
        optional = {k: doc[k] for k in _OPTIONAL if doc.get(k) is not None}
        return cls(
            task=doc["task"],
            graph=doc["graph"],
            contract=IOContract.from_manifest(doc),
            tolerance=Tolerance.from_json(doc["tolerance"]),
            files={n: FileRecord(i["sha256"], i["bytes"]) for n, i in doc["files"].items()},
            model=str(model.get("name", "")),
            model_config=model.get("config"),
            head=optional.get("head"),
            labels=_strings(optional.get("labels")),
            vocab=_strings(optional.get("vocab")),
            preprocess=optional.get("preprocess"),
            columns=_strings(optional.get("columns")),
            input_tree=optional.get("input_tree"),
            source=Source.from_json(doc["source"]) if doc.get("source") else None,
            exporter=ExporterRecord.from_json(doc["exporter"]) if doc.get("exporter") else None,
            parity=ParityRecord.from_json(doc["parity"]) if doc.get("parity") else None,
            golden=Golden.from_json(doc["golden"]) if doc.get("golden") else None,
            step_graph=StepGraph.from_json(doc["step_graph"]) if doc.get("step_graph") else None,
            variants=tuple(Variant.from_json(v) for v in doc.get("variants") or []),
            engines=tuple(Engine.from_json(e) for e in doc.get("engines") or []),
            versions=doc.get("versions") or {},
            created=str(doc.get("created", "")),
            extra={k: v for k, v in doc.items() if k not in _KNOWN},
        )

    @classmethod
    def of(cls, value: Manifest | Mapping[str, Any]) -> Manifest:
        """A manifest, or its JSON document (validated), as a Manifest: for public functions."""
        return value if isinstance(value, Manifest) else cls.from_json(value)

    @classmethod
    def for_task(
        cls, task: str, contract: IOContract, given: Manifest | Mapping[str, Any]
    ) -> Manifest:
        """A task object's manifest: a Manifest, or a whole document (validated). Code that wraps
        a backend by hand may give only what a task object reads (vocab, labels, head,
        preprocess): those keys, on the backend's contract."""
        if isinstance(given, Manifest) or "graph" in given:
            return cls.of(given)
        return cls(
            task,
            "",
            contract,
            head=given.get("head"),
            labels=_strings(given.get("labels")),
            vocab=_strings(given.get("vocab")),
            preprocess=given.get("preprocess"),
        )

    @staticmethod
    def engines_of(value: Manifest | Mapping[str, Any]) -> tuple[Engine, ...]:
        """The engines of a manifest, or of a document (maybe no more than its "engines")."""
        if isinstance(value, Manifest):
            return value.engines
        return tuple(Engine.of(e) for e in value.get("engines") or [])

    def get(self, key: str, default: Any = None) -> Any:
        """Item access with a default, for callers written against the dict."""
        try:
            return self[key]
        except KeyError:
            return default

    def __getitem__(self, key: str) -> Any:
        """The manifest read as its JSON document, for callers written against the dict (a view at
        a precision also answers "precision", "optimization" and "case_atol")."""
        view = {"precision": self.precision, "optimization": self.optimization,
                "case_atol": dict(self.case_atol)}  # fmt: skip
        return {**self.to_json(), **view}[key]

    def to_json(self) -> dict[str, Any]:
        """The document as written to `edgekit.json` (a view at a precision writes its base)."""
        doc: dict[str, Any] = {
            **self.extra,
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "task": self.task,
            "graph": self.graph,
            **self.contract.to_manifest(),
            "tolerance": self.tolerance.to_json(),
            "files": {n: {"sha256": f.sha256, "bytes": f.bytes} for n, f in self.files.items()},
            "model": {"name": self.model, "config": self.model_config},
        }
        if self.contract.token_input is not None:
            doc["token_input"] = self.contract.token_input
        for key in _OPTIONAL:
            value = getattr(self, key)
            if value is not None:
                doc[key] = list(value) if isinstance(value, tuple) else value
        for key in ("source", "exporter", "parity", "golden", "step_graph"):
            part = getattr(self, key)
            if part is not None:
                doc[key] = part.to_json()
        if self.variants:
            doc["variants"] = [v.to_json() for v in self.variants]
        if self.engines:
            doc["engines"] = [e.to_json() for e in self.engines]
        if self.versions:
            doc["versions"] = dict(self.versions)
        if self.created:
            doc["created"] = self.created
        return doc

    # ---- views and edits -----------------------------------------------------------------------

    def variant(self, precision: str) -> Variant | None:
        return next((v for v in self.variants if v.precision == precision), None)

    @property
    def precisions(self) -> list[str]:
        """fp32 and every variant's precision."""
        return ["fp32", *(v.precision for v in self.variants)]

    def at(self, precision: str, device: str = "cpu") -> Manifest:
        """The manifest as a backend should see it at `precision` ("fp32", "int8", "fp16" or
        "auto": on a CPU the int8 variant when it measured faster than fp32, on a GPU the fp16
        variant when there is one, else fp32): the variant's graph, step graph and tolerances."""
        if precision not in PRECISIONS:
            raise InputError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
        if precision == "auto":
            precision = self.auto_precision(device)
        if precision == "fp32":
            return self
        variant = self.variant(precision)
        if variant is None:
            raise InputError(
                f"this bundle has no {precision} variant (it has: {', '.join(self.precisions)}); "
                f"make one with: edgekit quantize BUNDLE --{precision}"
            )
        # the variant's own one-token graph, if it has one (the fp32 step graph is not its); a
        # variant that is the fp32 graph computed at another precision (bf16) steps as fp32 does
        step = StepGraph(True, variant.step_file) if variant.step_file else None
        if variant.runtime is not None:
            step = self.step_graph
        return replace(
            self,
            graph=variant.file,
            tolerance=variant.tolerance,
            precision=precision,
            optimization=variant.optimization,
            case_atol=variant.case_atol,
            step_graph=step,
        )

    def auto_precision(self, device: str) -> str:
        """int8 on a CPU when it measured faster there at quantize time; fp16 on a GPU; else fp32."""
        if device == "cpu":
            int8 = self.variant("int8")
            return "int8" if int8 is not None and int8.speed_ratio < 1.0 else "fp32"
        return "fp16" if self.variant("fp16") is not None else "fp32"

    def with_variant(self, variant: Variant) -> Manifest:
        """This manifest with `variant` added, replacing any of the same precision."""
        kept = tuple(v for v in self.variants if v.precision != variant.precision)
        return replace(self, variants=(*kept, variant))

    def with_engine(self, engine: Engine) -> Manifest:
        """This manifest with `engine` added, replacing any written to the same file."""
        kept = tuple(e for e in self.engines if e.file != engine.file)
        return replace(self, engines=(*kept, engine))

    @property
    def step_file(self) -> str | None:
        """The one-token graph steps run on (None: the sequence graph serves steps)."""
        step = self.step_graph
        return step.file if step is not None and step.used and step.file else None

    def vocabulary(self) -> Vocabulary:
        """The one vocabulary generation, token classifiers and stop strings read."""
        return Vocabulary(self.vocab or ())

    @property
    def recurrent(self) -> bool:
        return bool(self.contract.state) and self.contract.token_input is not None


# keys held as plain values, written only when set
_OPTIONAL = ("head", "labels", "vocab", "preprocess", "columns", "input_tree")
_KNOWN = {
    "schema", "schema_version", "task", "graph", "inputs", "outputs", "axes", "state",
    "token_input", "context", "tolerance", "files", "model", "source", "exporter", "parity", "golden",
    "step_graph", "variants", "engines", "versions", "created", *_OPTIONAL,
}  # fmt: skip


def _strings(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(v) for v in value)


__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "GRAPH",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Engine",
    "ExporterRecord",
    "FileRecord",
    "Golden",
    "GoldenCase",
    "Manifest",
    "ParityRecord",
    "Source",
    "StepGraph",
    "Tolerance",
    "Variant",
    "problems",
]
