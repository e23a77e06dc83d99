from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    IMAGE_FORMAT_JPEG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_WEBP: _ClassVar[ImageFormat]
    IMAGE_FORMAT_PNG: _ClassVar[ImageFormat]

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT16: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_INT8: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
IMAGE_FORMAT_JPEG: ImageFormat
IMAGE_FORMAT_WEBP: ImageFormat
IMAGE_FORMAT_PNG: ImageFormat
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT16: DType
DTYPE_FLOAT32: DType
DTYPE_INT8: DType
DTYPE_UINT8: DType

class EncodedImage(_message.Message):
    __slots__ = ("format", "data", "width", "height")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    format: ImageFormat
    data: bytes
    width: int
    height: int
    def __init__(self, format: _Optional[_Union[ImageFormat, str]] = ..., data: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class UplinkFrame(_message.Message):
    __slots__ = ("sequence", "capture_time_ns", "image", "requested_delay_ticks")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_DELAY_TICKS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    capture_time_ns: int
    image: EncodedImage
    requested_delay_ticks: float
    def __init__(self, sequence: _Optional[int] = ..., capture_time_ns: _Optional[int] = ..., image: _Optional[_Union[EncodedImage, _Mapping]] = ..., requested_delay_ticks: _Optional[float] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("name", "codec", "shape", "dtype", "scale", "payload")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    name: str
    codec: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DType
    scale: float
    payload: bytes
    def __init__(self, name: _Optional[str] = ..., codec: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DType, str]] = ..., scale: _Optional[float] = ..., payload: _Optional[bytes] = ...) -> None: ...

class Answer(_message.Message):
    __slots__ = ("source_sequence", "source_capture_time_ns", "conditioned_delay_ticks", "tensors", "server_receive_time_ns", "server_send_time_ns", "context_sequences", "steps")
    SOURCE_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_CAPTURE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    CONDITIONED_DELAY_TICKS_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    SERVER_RECEIVE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    SERVER_SEND_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    source_sequence: int
    source_capture_time_ns: int
    conditioned_delay_ticks: float
    tensors: _containers.RepeatedCompositeFieldContainer[Tensor]
    server_receive_time_ns: int
    server_send_time_ns: int
    context_sequences: _containers.RepeatedScalarFieldContainer[int]
    steps: ServerSteps
    def __init__(self, source_sequence: _Optional[int] = ..., source_capture_time_ns: _Optional[int] = ..., conditioned_delay_ticks: _Optional[float] = ..., tensors: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., server_receive_time_ns: _Optional[int] = ..., server_send_time_ns: _Optional[int] = ..., context_sequences: _Optional[_Iterable[int]] = ..., steps: _Optional[_Union[ServerSteps, _Mapping]] = ...) -> None: ...

class ServerSteps(_message.Message):
    __slots__ = ("taken_time_ns", "decoded_time_ns", "model_start_time_ns", "model_end_time_ns", "encoded_time_ns")
    TAKEN_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    DECODED_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    MODEL_START_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    MODEL_END_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    ENCODED_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    taken_time_ns: int
    decoded_time_ns: int
    model_start_time_ns: int
    model_end_time_ns: int
    encoded_time_ns: int
    def __init__(self, taken_time_ns: _Optional[int] = ..., decoded_time_ns: _Optional[int] = ..., model_start_time_ns: _Optional[int] = ..., model_end_time_ns: _Optional[int] = ..., encoded_time_ns: _Optional[int] = ...) -> None: ...

class FrameError(_message.Message):
    __slots__ = ("source_sequence", "reason", "message")
    SOURCE_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    source_sequence: int
    reason: str
    message: str
    def __init__(self, source_sequence: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class DownlinkMessage(_message.Message):
    __slots__ = ("answer", "error", "frames_dropped")
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    answer: Answer
    error: FrameError
    frames_dropped: int
    def __init__(self, answer: _Optional[_Union[Answer, _Mapping]] = ..., error: _Optional[_Union[FrameError, _Mapping]] = ..., frames_dropped: _Optional[int] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Size(_message.Message):
    __slots__ = ("height", "width")
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    height: int
    width: int
    def __init__(self, height: _Optional[int] = ..., width: _Optional[int] = ...) -> None: ...

class TensorSpec(_message.Message):
    __slots__ = ("name", "shape", "codec")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    codec: str
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., codec: _Optional[str] = ...) -> None: ...

class UplinkEncoding(_message.Message):
    __slots__ = ("format", "quality")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    format: ImageFormat
    quality: int
    def __init__(self, format: _Optional[_Union[ImageFormat, str]] = ..., quality: _Optional[int] = ...) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("model_name", "model_version", "remote_input", "local_input", "combiner", "tensors", "fps", "context_frames", "num_classes", "max_message_bytes", "uplink")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    REMOTE_INPUT_FIELD_NUMBER: _ClassVar[int]
    LOCAL_INPUT_FIELD_NUMBER: _ClassVar[int]
    COMBINER_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FRAMES_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    UPLINK_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: str
    remote_input: Size
    local_input: Size
    combiner: str
    tensors: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    fps: float
    context_frames: int
    num_classes: int
    max_message_bytes: int
    uplink: UplinkEncoding
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., remote_input: _Optional[_Union[Size, _Mapping]] = ..., local_input: _Optional[_Union[Size, _Mapping]] = ..., combiner: _Optional[str] = ..., tensors: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., fps: _Optional[float] = ..., context_frames: _Optional[int] = ..., num_classes: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., uplink: _Optional[_Union[UplinkEncoding, _Mapping]] = ...) -> None: ...
