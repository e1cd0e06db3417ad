"""Request bodies to validated arrays, and the 4xx errors that say what was wrong.

Two body formats carry a batch:

- ``application/json``: ``{"inputs": [item, ...]}`` with each item a nested list of numbers of
  the input shape. JSON has no dtype, so numbers are checked against the served one: integer
  inputs need JSON integers in the dtype's range, float inputs any finite number (``NaN`` and
  ``Infinity`` are rejected, and so is a number that overflows the dtype).
- ``application/x-npy``: one ``.npy`` file (``numpy.save``), read with ``allow_pickle=False``;
  its dtype must be the served dtype exactly (byte order aside), since the format states it.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from green_deploy.errors import GreenDeployError
from green_deploy.serving.model import InputSpec

JSON_TYPE = "application/json"
NPY_TYPE = "application/x-npy"


class InvalidRequestError(GreenDeployError):
    """A request the server refuses; ``status`` is the HTTP status, ``code`` a stable short name
    (``wrong_shape``, ``wrong_dtype``, ``too_many_items``, ...) for clients and metrics."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def media_type(content_type: str | None) -> str:
    """The bare media type of a ``Content-Type`` or ``Accept`` entry, lower case."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_body(body: bytes, content_type: str | None, spec: InputSpec, max_items: int) -> np.ndarray:
    """The validated batch a request carries, in the served dtype and shape."""
    kind = media_type(content_type)
    if kind == JSON_TYPE:
        batch = parse_json_inputs(body, spec, max_items)
    elif kind == NPY_TYPE:
        batch = parse_npy_inputs(body, spec, max_items)
    else:
        raise InvalidRequestError(
            415,
            "unsupported_media_type",
            f"Content-Type {content_type!r} is not served; send {JSON_TYPE} "
            f'({{"inputs": [...]}}) or {NPY_TYPE} (a numpy .npy file)',
        )
    return batch


def _reject_constant(name: str) -> Any:
    raise InvalidRequestError(422, "non_finite", f"inputs hold {name}; only finite numbers are accepted")


def parse_json_inputs(body: bytes, spec: InputSpec, max_items: int) -> np.ndarray:
    try:
        payload = json.loads(body, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidRequestError(400, "malformed_json", f"the body is not valid JSON: {error}") from error
    except RecursionError as error:
        raise InvalidRequestError(400, "malformed_json", "the JSON body is nested too deeply") from error
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise InvalidRequestError(
            400, "malformed_json", 'expected a JSON object {"inputs": [item, ...]}; no "inputs" key found'
        )
    unknown = sorted(set(payload) - {"inputs"})
    if unknown:
        raise InvalidRequestError(400, "malformed_json", f'unknown key(s) {unknown}; only "inputs" is read')
    inputs = payload["inputs"]
    if not isinstance(inputs, list):
        raise InvalidRequestError(
            422,
            "wrong_shape",
            f'"inputs" must be a list of items {spec.describe()}, got {type(inputs).__name__}',
        )
    _check_count(len(inputs), max_items)
    try:
        array = np.array(inputs)
    except (ValueError, TypeError) as error:  # ragged nesting
        raise InvalidRequestError(
            422, "wrong_shape", f"inputs are ragged (items of different lengths); expected {spec.describe()}"
        ) from error
    _check_shape(array.shape, spec)
    return _cast_json_numbers(array, spec)


def _cast_json_numbers(array: np.ndarray, spec: InputSpec) -> np.ndarray:
    target = spec.numpy_dtype
    if array.dtype.kind not in "iuf":
        found = {"b": "booleans", "U": "strings", "S": "strings"}.get(
            array.dtype.kind, "mixed or non-numeric values"
        )
        raise InvalidRequestError(422, "wrong_dtype", f"inputs hold {found}; expected {target.name} numbers")
    if target.kind in "iu":
        if array.dtype.kind == "f":
            raise InvalidRequestError(
                422, "wrong_dtype", f"inputs hold non-integer numbers; expected {target.name} integers (ids)"
            )
        info = np.iinfo(target)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise InvalidRequestError(
                422,
                "out_of_range",
                f"inputs hold integers outside {target.name}'s range [{info.min}, {info.max}]",
            )
        return array.astype(target, copy=False)
    with np.errstate(over="ignore"):
        cast = array.astype(target, copy=False)
    _check_finite(cast)
    return cast


def parse_npy_inputs(body: bytes, spec: InputSpec, max_items: int) -> np.ndarray:
    try:
        array = np.lib.format.read_array(io.BytesIO(body), allow_pickle=False)
    except Exception as error:  # an untrusted payload: whatever the reader rejects, the client sent
        raise InvalidRequestError(
            400, "malformed_npy", f"the body is not a readable .npy array (allow_pickle=False): {error}"
        ) from error
    target = spec.numpy_dtype
    if array.dtype != target and array.dtype.newbyteorder("=") == target.newbyteorder("="):
        array = array.astype(target)  # the same numbers in the other byte order
    if array.dtype != target:
        raise InvalidRequestError(
            422,
            "wrong_dtype",
            f"the array is {array.dtype.name}; expected {target.name} (x.astype('{target.name}'))",
        )
    if array.ndim == 0:
        raise InvalidRequestError(422, "wrong_shape", f"the array is a scalar; expected {spec.describe()}")
    _check_count(len(array), max_items)
    _check_shape(array.shape, spec)
    if target.kind == "f":
        _check_finite(array)
    return array


def _check_count(n_items: int, max_items: int) -> None:
    if n_items == 0:
        raise InvalidRequestError(422, "empty_batch", "inputs hold no items; send one at least")
    if n_items > max_items:
        raise InvalidRequestError(
            422, "too_many_items", f"{n_items} items in one request; at most {max_items} are accepted"
        )


def _check_shape(shape: tuple[int, ...], spec: InputSpec) -> None:
    if tuple(shape[1:]) != spec.shape:
        raise InvalidRequestError(
            422,
            "wrong_shape",
            f"inputs have shape {tuple(shape)}; expected {spec.describe()} (a batch axis first, "
            f"then one item of shape {spec.shape})",
        )


def _check_finite(array: np.ndarray) -> None:
    if not np.isfinite(array).all():
        raise InvalidRequestError(
            422,
            "non_finite",
            f"inputs hold NaN or infinite values (or numbers too large for {array.dtype.name})",
        )


def encode_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()
