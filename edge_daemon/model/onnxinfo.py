"""Read an ONNX file's metadata and first input shape without onnx or onnxruntime.

A minimal protobuf walk over the fields we need (ModelProto.metadata_props = 14, ModelProto.graph = 7,
GraphProto.input = 11, ValueInfoProto.type = 2, TypeProto.tensor_type = 1, Tensor.shape = 2,
TensorShapeProto.dim = 1, Dimension.dim_value = 1 / dim_param = 2). Weight blobs are skipped by length,
so reading a 50 MB model costs one pass over its bytes and no allocation of the weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from edge_daemon.errors import ModelError


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, memoryview | int]]:
    """(field number, wire type, value) for each field: bytes for length-delimited, int otherwise."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield field, wire, value
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("truncated field")
            yield field, wire, buf[pos : pos + n]
            pos += n
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _bytes_fields(buf: memoryview, number: int) -> Iterator[memoryview]:
    for field, wire, value in _fields(buf):
        if field == number and wire == 2 and isinstance(value, memoryview):
            yield value


def read_onnx_info(path: Path) -> tuple[dict[str, str], tuple[int | str, ...]]:
    """(metadata key -> value, first input's shape with ``dim_param`` names for dynamic dims)."""
    try:
        data = memoryview(path.read_bytes())
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {exc}") from None
    try:
        meta: dict[str, str] = {}
        shape: tuple[int | str, ...] = ()
        for field, wire, value in _fields(data):
            if wire != 2 or not isinstance(value, memoryview):
                continue
            if field == 14:
                kv = {
                    f: bytes(v).decode("utf-8", "replace")
                    for f, w, v in _fields(value)
                    if isinstance(v, memoryview)
                }
                meta[kv.get(1, "")] = kv.get(2, "")
            elif field == 7 and not shape:
                shape = _first_input_shape(value)
        return meta, shape
    except (ValueError, IndexError):
        raise ModelError(f"{path}: not a valid ONNX file (truncated or corrupt)") from None


def _first_input_shape(graph: memoryview) -> tuple[int | str, ...]:
    for value_info in _bytes_fields(graph, 11):
        for type_proto in _bytes_fields(value_info, 2):
            for tensor in _bytes_fields(type_proto, 1):
                for shape in _bytes_fields(tensor, 2):
                    dims: list[int | str] = []
                    for dim in _bytes_fields(shape, 1):
                        d: int | str = "?"
                        for f, _w, v in _fields(dim):
                            if f == 1 and isinstance(v, int):
                                d = v
                            elif f == 2 and isinstance(v, memoryview):
                                d = bytes(v).decode("utf-8", "replace")
                        dims.append(d)
                    return tuple(dims)
        return ()
    return ()
