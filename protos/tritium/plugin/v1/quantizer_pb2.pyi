from tritium.protos.tritium.plugin.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CanQuantizeRequest(_message.Message):
    __slots__ = ("tensor_name", "dtype", "shape", "config")
    TENSOR_NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    tensor_name: str
    dtype: _common_pb2.DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    config: _common_pb2.QuantizerConfig
    def __init__(self, tensor_name: _Optional[str] = ..., dtype: _Optional[_Union[_common_pb2.DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., config: _Optional[_Union[_common_pb2.QuantizerConfig, _Mapping]] = ...) -> None: ...

class CanQuantizeResponse(_message.Message):
    __slots__ = ("ok", "reason", "quant_type")
    OK_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    QUANT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    reason: str
    quant_type: _common_pb2.QuantType
    def __init__(self, ok: _Optional[bool] = ..., reason: _Optional[str] = ..., quant_type: _Optional[_Union[_common_pb2.QuantType, str]] = ...) -> None: ...

class QuantizedTensor(_message.Message):
    __slots__ = ("name", "quant_type", "shape", "data", "scales")
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUANT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SCALES_FIELD_NUMBER: _ClassVar[int]
    name: str
    quant_type: _common_pb2.QuantType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: _common_pb2.TensorHandle
    scales: _common_pb2.TensorHandle
    def __init__(self, name: _Optional[str] = ..., quant_type: _Optional[_Union[_common_pb2.QuantType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[_Union[_common_pb2.TensorHandle, _Mapping]] = ..., scales: _Optional[_Union[_common_pb2.TensorHandle, _Mapping]] = ...) -> None: ...

class QuantizeRequest(_message.Message):
    __slots__ = ("name", "input", "config")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    name: str
    input: _common_pb2.TensorHandle
    config: _common_pb2.QuantizerConfig
    def __init__(self, name: _Optional[str] = ..., input: _Optional[_Union[_common_pb2.TensorHandle, _Mapping]] = ..., config: _Optional[_Union[_common_pb2.QuantizerConfig, _Mapping]] = ...) -> None: ...

class QuantizeResponse(_message.Message):
    __slots__ = ("tensor", "mse")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    MSE_FIELD_NUMBER: _ClassVar[int]
    tensor: QuantizedTensor
    mse: float
    def __init__(self, tensor: _Optional[_Union[QuantizedTensor, _Mapping]] = ..., mse: _Optional[float] = ...) -> None: ...

class DequantizeRequest(_message.Message):
    __slots__ = ("tensor", "out")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    OUT_FIELD_NUMBER: _ClassVar[int]
    tensor: QuantizedTensor
    out: _common_pb2.TensorHandle
    def __init__(self, tensor: _Optional[_Union[QuantizedTensor, _Mapping]] = ..., out: _Optional[_Union[_common_pb2.TensorHandle, _Mapping]] = ...) -> None: ...

class DequantizeResponse(_message.Message):
    __slots__ = ("out",)
    OUT_FIELD_NUMBER: _ClassVar[int]
    out: _common_pb2.TensorHandle
    def __init__(self, out: _Optional[_Union[_common_pb2.TensorHandle, _Mapping]] = ...) -> None: ...
