"""Request decoding and validation for the local model server: limits checked before anything is built.

A `TensorProto` declares its shape apart from the values it carries, and TensorFlow's own decoding fills
a declared shape from as few as one value. So the declared shape is checked first (rank, every dimension,
the batch and element limits) and the values counted against it without expanding anything; only then
is the array built. Errors name the input, the example or the item, never the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2


@dataclass(frozen=True)
class Limits:
    """What a request may hold. `text_inputs` names the inputs (and tf.Example features) that carry
    note text: those must be valid UTF-8 and at most `max_note_chars` characters, and a Classify
    example must hold them. `max_elements` bounds the elements one input tensor may declare."""

    max_batch_size: int = 64
    max_note_chars: int = 100_000
    max_message_bytes: int = 16 * 1024 * 1024
    text_inputs: frozenset[str] = frozenset({"text"})
    max_elements: int = 1 << 20


class RequestError(Exception):
    """A request the server refuses: the gRPC code and a message naming the problem (never data)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> RequestError:
    """An INVALID_ARGUMENT refusal."""
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


# The TensorProto field that holds each dtype's values when `tensor_content` is empty.
_VALUE_FIELDS = {
    types_pb2.DT_STRING: "string_val",
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_BFLOAT16: "half_val",
}


def check_text(values: list[bytes], where: str, limits: Limits) -> None:
    """Every value valid UTF-8 and within the note length limit."""
    for index, value in enumerate(values):
        try:
            chars = len(value.decode("utf-8"))
        except UnicodeDecodeError:
            raise invalid(f"{where} item {index}: invalid UTF-8") from None
        if chars > limits.max_note_chars:
            raise invalid(
                f"{where} item {index}: {chars} characters, more than the limit {limits.max_note_chars}"
            )


def check_batch(size: int, where: str, limits: Limits) -> None:
    """A batch that is neither empty nor over the limit."""
    if size == 0:
        raise invalid(f"{where}: empty batch")
    if size > limits.max_batch_size:
        raise invalid(f"{where}: batch of {size}, more than the limit {limits.max_batch_size}")


def _value_count(proto: tensor_pb2.TensorProto, where: str) -> int:
    """How many values the proto carries, counted without decoding them."""
    field = _VALUE_FIELDS.get(proto.dtype)
    if field is None:
        raise invalid(f"{where}: dtype {types_pb2.DataType.Name(proto.dtype)} is not supported")
    if proto.tensor_content:
        if proto.dtype == types_pb2.DT_STRING:
            raise invalid(f"{where}: a string tensor cannot use tensor_content")
        itemsize = tf.dtypes.as_dtype(proto.dtype).size
        if len(proto.tensor_content) % itemsize:
            raise invalid(f"{where}: tensor_content is not a whole number of values")
        return len(proto.tensor_content) // itemsize
    return len(getattr(proto, field))


def decode_input(
    key: str, proto: tensor_pb2.TensorProto, spec: meta_graph_pb2.TensorInfo, limits: Limits
) -> np.ndarray:
    """The array for signature input `key`, after its dtype, declared shape and value count are checked
    against the signature and the limits (so a proto declaring a huge shape is refused unexpanded)."""
    where = f"input {key!r}"
    if proto.dtype != spec.dtype:
        expected, got = types_pb2.DataType.Name(spec.dtype), types_pb2.DataType.Name(proto.dtype)
        raise invalid(f"{where}: expected {expected}, got {got}")
    if proto.tensor_shape.unknown_rank:
        raise invalid(f"{where}: the tensor_shape must be known")
    dims = [dim.size for dim in proto.tensor_shape.dim]
    expected_shape = spec.tensor_shape
    if not expected_shape.unknown_rank:
        if len(expected_shape.dim) != len(dims):
            raise invalid(f"{where}: expected rank {len(expected_shape.dim)}, got {len(dims)}")
        for axis, (want, got) in enumerate(zip(expected_shape.dim, dims, strict=True)):
            if want.size >= 0 and want.size != got:
                raise invalid(f"{where}: dimension {axis} is {got}, expected {want.size}")
    if any(size < 0 for size in dims):
        raise invalid(f"{where}: negative dimension in shape {dims}")
    if dims:
        check_batch(dims[0], where, limits)
    elements = math.prod(dims)
    if elements > limits.max_elements:
        raise invalid(
            f"{where}: shape {dims} has {elements} elements, more than the limit {limits.max_elements}"
        )
    values = _value_count(proto, where)
    if values != elements:
        raise invalid(f"{where}: shape {dims} needs {elements} values, the tensor holds {values}")
    try:
        value = tf.make_ndarray(proto)
    except Exception:
        raise invalid(f"{where}: malformed TensorProto") from None
    if key in limits.text_inputs and proto.dtype == types_pb2.DT_STRING:
        check_text(list(value.reshape(-1)), where, limits)
    return value
