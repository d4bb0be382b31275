"""The wire format: exact round trips, allow-listed dtypes only, sizes checked before decoding."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from napari_medseg.serve.wire import (DTYPES, WireFormatError, pack, region_from_json, region_to_json,
                                      unpack)


@pytest.mark.parametrize("codec", ["raw", "zlib", "blosc2"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_is_exact(codec, dtype):
    if codec == "blosc2":
        pytest.importorskip("blosc2")
    rng = np.random.default_rng(0)
    a = (rng.normal(0, 100, (5, 7, 9)) > 0) if dtype == "bool" else rng.normal(0, 100, (5, 7, 9)).astype(dtype)
    header, arrays = unpack(pack({"k": [1, "x"]}, {"a": a, "b": a[:, :0]}, codec=codec))
    assert header == {"k": [1, "x"]}
    assert arrays["a"].dtype == a.dtype and np.array_equal(arrays["a"], a)
    assert arrays["a"].flags.writeable and arrays["b"].shape == (5, 0, 9)


def test_big_endian_and_strided_arrays_arrive_as_values():
    a = np.arange(24, dtype=">i4").reshape(2, 3, 4)[:, ::2]
    out = unpack(pack({}, {"a": a}))[1]["a"]
    assert np.array_equal(out, a) and out.dtype == np.int32


def test_object_arrays_and_pickle_are_refused():
    with pytest.raises(WireFormatError, match="cannot be sent"):
        pack({}, {"a": np.array([{"x": 1}], dtype=object)})
    head = json.dumps({"arrays": [{"name": "a", "dtype": "object", "shape": [1], "codec": "raw",
                                   "offset": 0, "length": 8}]}).encode()
    with pytest.raises(WireFormatError, match="not allowed"):
        unpack(b"MEDSEG1\n" + struct.pack(">I", len(head)) + head + b"\0" * 8)


@pytest.mark.parametrize("body, words", [
    (b"", "not a medseg message"), (b"PK\x03\x04" + b"\0" * 20, "not a medseg message"),
    (b"MEDSEG1\n" + struct.pack(">I", 10**9), "header length"),
    (b"MEDSEG1\n" + struct.pack(">I", 3) + b"{{{", "not valid JSON"),
    (b"MEDSEG1\n" + struct.pack(">I", 2) + b"[]", "JSON object"),
])
def test_malformed_messages(body, words):
    with pytest.raises(WireFormatError, match=words):
        unpack(body)


def test_truncated_and_lying_payloads():
    body = pack({}, {"a": np.arange(1000, dtype=np.int16)}, codec="zlib")
    with pytest.raises(WireFormatError, match="outside the body"):
        unpack(body[:-10])
    with pytest.raises(WireFormatError, match="over this server's limit"):
        unpack(body, max_array_bytes=100)
    # a header declaring a different shape than the payload holds
    n = struct.unpack(">I", body[8:12])[0]
    head = json.loads(body[12:12 + n])
    head["arrays"][0]["shape"] = [2000]
    text = json.dumps(head).encode()
    with pytest.raises(WireFormatError, match="declares"):
        unpack(b"MEDSEG1\n" + struct.pack(">I", len(text)) + text + body[12 + n:])


def test_regions():
    region = (slice(1, 4), slice(0, 2), slice(5, 9))
    assert region_from_json(region_to_json(region), (10, 10, 10)) == region
    for bad in ([[0, 11], [0, 1], [0, 1]], [[3, 2], [0, 1], [0, 1]], [[0, 1]], "x", [[0, "a"], [0, 1], [0, 1]]):
        with pytest.raises(WireFormatError):
            region_from_json(bad, (10, 10, 10))
