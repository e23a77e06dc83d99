"""Conversions between protobuf messages and the domain types both sides share (codec bytes,
image formats, tensor specifications): one place, so edge and server read the wire alike."""

from __future__ import annotations

from splitcast.models.answers import WireTensor
from splitcast.models.codec import CodecError, EncodedTensor
from splitcast.v1 import splitcast_pb2 as pb

IMAGE_FORMATS = {
    "jpeg": pb.IMAGE_FORMAT_JPEG,
    "webp": pb.IMAGE_FORMAT_WEBP,
    "png": pb.IMAGE_FORMAT_PNG,
}
FORMAT_NAMES = {value: name for name, value in IMAGE_FORMATS.items()}
_DTYPES = {
    "float16": pb.DTYPE_FLOAT16,
    "float32": pb.DTYPE_FLOAT32,
    "int8": pb.DTYPE_INT8,
    "uint8": pb.DTYPE_UINT8,
}
_DTYPE_NAMES = {value: name for name, value in _DTYPES.items()}


def tensor_message(name: str, encoded: EncodedTensor) -> pb.Tensor:
    return pb.Tensor(
        name=name,
        codec=encoded.codec,
        shape=list(encoded.shape),
        dtype=_DTYPES[encoded.dtype],
        scale=encoded.scale,
        payload=encoded.payload,
    )


def encoded_tensor(message: pb.Tensor) -> EncodedTensor:
    """The codec's view of a tensor message; raises CodecError for an unknown dtype."""
    dtype = _DTYPE_NAMES.get(message.dtype)
    if dtype is None:
        raise CodecError(f"tensor {message.name!r} has unknown dtype {message.dtype}")
    return EncodedTensor(message.codec, tuple(message.shape), dtype, message.scale, message.payload)


def tensor_specs(wire: tuple[WireTensor, ...]) -> list[pb.TensorSpec]:
    return [pb.TensorSpec(name=t.name, shape=list(t.shape), codec=t.codec) for t in wire]


def wire_tensors(specs: list[pb.TensorSpec]) -> tuple[WireTensor, ...]:
    return tuple(WireTensor(s.name, tuple(s.shape), s.codec) for s in specs)


def format_label(value: int) -> str:
    """An image format enum value as a readable name, also for values this build lacks."""
    return pb.ImageFormat.Name(value) if value in pb.ImageFormat.values() else str(value)
