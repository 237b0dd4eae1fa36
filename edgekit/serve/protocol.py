"""The KServe v2 (Open Inference Protocol) infer request and response, with Triton's binary tensor
extension, as `tritonclient.http` speaks them.

A request body is JSON, or JSON followed by raw tensor bytes: the JSON's length is then in the
`Inference-Header-Content-Length` header, and each input with `parameters.binary_data_size` takes
that many bytes, in input order. Outputs go back the same way when the request asks for binary data
(per output, or `binary_data_output` for all), else as JSON lists.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.bundle.dtypes import DTYPES
from edgekit.errors import InputError
from edgekit.serve import fields

# v2 datatype <-> numpy, from the one dtype table (listed bool, unsigned, signed, float; by size)
DATATYPES: dict[str, type[np.generic]] = {
    d.v2: np.dtype(d.numpy).type
    for d in sorted(
        DTYPES.values(),
        key=lambda d: ("buif".index(np.dtype(d.numpy).kind), np.dtype(d.numpy).itemsize),
    )
}
NUMPY_TO_V2 = {np.dtype(t): name for name, t in DATATYPES.items()}
HEADER_LENGTH = "Inference-Header-Content-Length"
MAX_ELEMENTS = 1 << 28  # a request naming more elements than this is refused before allocating


@dataclass
class InferRequest:
    inputs: dict[str, np.ndarray]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, bool] | None = None  # requested output -> as binary; None: all outputs
    binary_all: bool = False
    classification: dict[str, int] = field(default_factory=dict)  # output -> top K, as BYTES


def v2_datatype(dtype: Any) -> str:
    return NUMPY_TO_V2[np.dtype(dtype)]


def _not_json(constant: str) -> Any:
    raise InputError(
        f"the request body has {constant}, which is not a JSON number; send finite numbers"
    )


def json_object(text: bytes) -> dict[str, Any]:
    try:
        value = json.loads(text, parse_constant=_not_json)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError("the request body nests too deeply to be a v2 request") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise InputError(f"the request body has a value JSON cannot give here: {exc}") from None
    if not isinstance(value, dict):
        raise InputError("the request body must be a JSON object")
    return value


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """The request's tensors as numpy arrays; every problem is an InputError naming it."""
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise InputError(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if not 0 < size <= len(body):
            raise InputError(f"{HEADER_LENGTH} {size} is outside the body ({len(body)} bytes)")
        head, rest = json_object(body[:size]), memoryview(body)[size:]
    else:
        head, rest = json_object(body), memoryview(b"")
    entries = fields.objects(head.get("inputs"), '"inputs"')
    if not entries:
        raise InputError('the request has no "inputs" list')
    inputs, offset = {}, 0
    for entry in entries:
        name, array, used = _tensor(entry, rest[offset:])
        if name in inputs:
            raise InputError(f"input {name!r} is given twice")
        inputs[name], offset = array, offset + used
    if offset != len(rest):
        raise InputError(f"{len(rest) - offset} bytes of binary data follow the last input")
    parameters = fields.obj(head.get("parameters") or {}, '"parameters"')
    binary_all = fields.flag(parameters.get("binary_data_output", False), "binary_data_output")
    outputs, classification = None, {}
    if head.get("outputs") is not None:
        outputs = {}
        for out in fields.objects(head["outputs"], '"outputs"'):
            if not isinstance(out.get("name"), str):
                raise InputError('each of "outputs" needs a "name" string')
            name = out["name"]
            asked = fields.obj(out.get("parameters") or {}, f"output {name!r} parameters")
            outputs[name] = fields.flag(asked.get("binary_data", False), f"{name} binary_data")
            k = asked.get("classification")
            if k is not None:
                classification[name] = fields.integer(k, f"output {name!r}: classification", 1)
    rid = head.get("id")
    if (rid is not None and not isinstance(rid, (str, int))) or isinstance(rid, bool):
        raise InputError(f'"id" must be a string, got {type(rid).__name__}')
    return InferRequest(
        inputs,
        str(rid) if rid is not None else None,
        parameters,
        outputs,
        binary_all,
        classification,
    )


def _tensor(entry: Any, binary: memoryview) -> tuple[str, np.ndarray, int]:
    """(name, array, binary bytes used) of one v2 input."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise InputError('each input needs a "name"')
    name, datatype, shape = entry["name"], entry.get("datatype"), entry.get("shape")
    if datatype not in DATATYPES:
        raise InputError(
            f"input {name!r}: datatype {datatype!r}, expected one of {list(DATATYPES)}"
        )
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InputError(f"input {name!r}: shape must be a list of non-negative integers")
    count = math.prod(shape)  # exact: a product past int64 must not wrap under the limit
    if count > MAX_ELEMENTS:
        raise InputError(f"input {name!r}: {count} elements is more than {MAX_ELEMENTS}")
    dtype = np.dtype(DATATYPES[datatype])
    size = fields.obj(entry.get("parameters") or {}, f"input {name!r} parameters").get(
        "binary_data_size"
    )
    if size is not None:
        fields.integer(size, f"input {name!r}: binary_data_size", 0)
        if size != count * dtype.itemsize or size > len(binary):
            raise InputError(
                f"input {name!r}: binary_data_size {size}, expected {count * dtype.itemsize} "
                f"for shape {shape} {datatype} ({len(binary)} bytes left in the body)"
            )
        # raw values already in their dtype, taken as sent (as Triton does: perf_analyzer's random
        # data has NaN in it); only JSON numbers are cast, and judged after the cast
        return name, np.frombuffer(binary[:size], dtype).reshape(shape).copy(), size
    data = entry.get("data")
    if data is None:
        raise InputError(f'input {name!r} has neither "data" nor binary_data_size')
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # judged after the cast, below
            array = np.asarray(data, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"input {name!r}: data is not {datatype}: {exc}") from None
    if array.size != count:
        raise InputError(f"input {name!r}: {array.size} values for shape {shape}")
    return name, _finite(name, datatype, array.reshape(shape)), 0


def _finite(name: str, datatype: str, array: np.ndarray) -> np.ndarray:
    """JSON float inputs must be finite in their own dtype after the cast (1e39 is inf in FP32):
    the client's mistake, refused rather than run."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InputError(
            f"input {name!r}: {datatype} values must be finite; got NaN, an infinity, or a value "
            f"beyond {datatype}'s range"
        )
    return array


def encode_response(
    model: str, request: InferRequest, outputs: dict[str, np.ndarray]
) -> tuple[bytes, dict[str, str]]:
    """The response body and its extra headers (the JSON length when binary data follows)."""
    wanted = request.outputs if request.outputs is not None else dict.fromkeys(outputs, False)
    unknown = [n for n in wanted if n not in outputs]
    if unknown:
        raise InputError(f"unknown outputs {unknown}; the model has {list(outputs)}")
    entries, blobs = [], []
    for name, binary in wanted.items():
        value = np.ascontiguousarray(outputs[name])
        strings = value.dtype == object  # BYTES: the classification extension's "score:index"
        entry: dict[str, Any] = {
            "name": name,
            "datatype": "BYTES" if strings else v2_datatype(value.dtype),
            "shape": list(value.shape),
        }
        if binary or request.binary_all:
            blob = _bytes_blob(value) if strings else value.tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            flat = value.ravel().tolist()
            if strings:
                flat = [v.decode() for v in flat]
            elif value.dtype.kind == "f" and not np.isfinite(value).all():
                flat = [v if math.isfinite(v) else _JSON_NONFINITE[str(v)] for v in flat]
            entry["data"] = flat
        entries.append(entry)
    head: dict[str, Any] = {"model_name": model, "model_version": "1", "outputs": entries}
    if request.id is not None:
        head["id"] = request.id
    text = json.dumps(head, allow_nan=False).encode()  # always valid JSON
    if not blobs:
        return text, {}
    return text + b"".join(blobs), {HEADER_LENGTH: str(len(text))}


# non-finite floats in JSON data, as protobuf's JSON mapping writes them (JSON has no NaN)
_JSON_NONFINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _bytes_blob(value: np.ndarray) -> bytes:
    """BYTES elements in the binary tensor extension: each a 4-byte little-endian length, then it."""
    return b"".join(len(v).to_bytes(4, "little") + v for v in value.ravel().tolist())
