"""Request bodies to arrays: the dtype, shape, range and format rules, one by one."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from green_deploy.serving.model import InputSpec
from green_deploy.serving.validation import InvalidRequestError, encode_npy, parse_body

IDS = InputSpec("int64", (4,))
BYTES = InputSpec("uint8", (2,))
IMAGES = InputSpec("float16", (2, 2))


def _json(inputs, spec=IDS, max_items=8):
    return parse_body(
        json.dumps({"inputs": inputs}).encode(), "application/json; charset=utf-8", spec, max_items
    )


def _refused(call, status, code):
    with pytest.raises(InvalidRequestError) as raised:
        call()
    assert (raised.value.status, raised.value.code) == (status, code), raised.value.message
    return raised.value.message


def test_json_integers_become_the_served_integer_dtype():
    batch = _json([[1, 2, 3, 4], [5, 6, 7, 0]])
    assert batch.dtype == np.int64 and batch.shape == (2, 4)
    assert _json([[0, 255]], BYTES).dtype == np.uint8


@pytest.mark.parametrize(
    ("inputs", "spec", "code", "says"),
    [
        ([[1.5, 2, 3, 4]], IDS, "wrong_dtype", "integers"),
        ([[1.0, 2, 3, 4]], IDS, "wrong_dtype", "integers"),
        ([[256, 0]], BYTES, "out_of_range", "[0, 255]"),
        ([[-1, 0]], BYTES, "out_of_range", "uint8"),
        ([[2**70, 1, 2, 3]], IDS, "wrong_dtype", "non-numeric"),
        ([[True, False, True, True]], IDS, "wrong_dtype", "booleans"),
        ([[1, None, 2, 3]], IDS, "wrong_dtype", "non-numeric"),
        ([[1, 2, 3]], IDS, "wrong_shape", "(N, 4)"),
        ([1, 2, 3, 4], IDS, "wrong_shape", "(N, 4)"),
        ([[[70000.0, 0], [0, 0]]], IMAGES, "non_finite", "float16"),
    ],
)
def test_json_numbers_that_do_not_fit_the_served_input_are_refused(inputs, spec, code, says):
    assert says in _refused(lambda: _json(inputs, spec), 422, code)


def test_json_structure_errors():
    body = parse_body
    _refused(lambda: body(b"\xff\xfe", "application/json", IDS, 8), 400, "malformed_json")
    _refused(lambda: body(b"[1, 2]", "application/json", IDS, 8), 400, "malformed_json")
    _refused(lambda: body(b'{"inputs": [], "extra": 1}', "application/json", IDS, 8), 400, "malformed_json")
    _refused(lambda: body(b'{"inputs": ' + b"[" * 100_000, "application/json", IDS, 8), 400, "malformed_json")
    _refused(lambda: body(b'{"inputs": {"a": 1}}', "application/json", IDS, 8), 422, "wrong_shape")
    _refused(
        lambda: body(b'{"inputs": [[Infinity, 1, 2, 3]]}', "application/json", IDS, 8), 422, "non_finite"
    )
    assert "at most 2" in _refused(lambda: _json([[1, 2, 3, 4]] * 3, max_items=2), 422, "too_many_items")


def test_npy_must_state_the_served_dtype_and_shape():
    ids = np.arange(8, dtype=np.int64).reshape(2, 4)
    np.testing.assert_array_equal(parse_body(encode_npy(ids), "application/x-npy", IDS, 8), ids)
    big_endian = ids.astype(">i8")
    np.testing.assert_array_equal(parse_body(encode_npy(big_endian), "application/x-npy", IDS, 8), ids)
    says = _refused(
        lambda: parse_body(encode_npy(ids.astype(np.int32)), "application/x-npy", IDS, 8), 422, "wrong_dtype"
    )
    assert "astype('int64')" in says
    _refused(lambda: parse_body(encode_npy(np.int64(3)), "application/x-npy", IDS, 8), 422, "wrong_shape")
    _refused(lambda: parse_body(encode_npy(ids[:, :3]), "application/x-npy", IDS, 8), 422, "wrong_shape")
    _refused(lambda: parse_body(encode_npy(ids[:0]), "application/x-npy", IDS, 8), 422, "empty_batch")
    truncated = encode_npy(ids)[:-5]
    _refused(lambda: parse_body(truncated, "application/x-npy", IDS, 8), 400, "malformed_npy")
    buffer = io.BytesIO()
    np.save(buffer, np.array([object()]), allow_pickle=True)
    says = _refused(lambda: parse_body(buffer.getvalue(), "application/x-npy", IDS, 8), 400, "malformed_npy")
    assert "allow_pickle=False" in says


def test_other_media_types_are_refused():
    says = _refused(lambda: parse_body(b"{}", "text/plain", IDS, 8), 415, "unsupported_media_type")
    assert "application/json" in says and "application/x-npy" in says
    _refused(lambda: parse_body(b"{}", None, IDS, 8), 415, "unsupported_media_type")
