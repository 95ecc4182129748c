from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PluginKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLUGIN_KIND_UNSPECIFIED: _ClassVar[PluginKind]
    PLUGIN_KIND_BACKEND: _ClassVar[PluginKind]
    PLUGIN_KIND_SCHEDULER: _ClassVar[PluginKind]
    PLUGIN_KIND_QUANTIZER: _ClassVar[PluginKind]

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_F32: _ClassVar[DType]
    DTYPE_F16: _ClassVar[DType]
    DTYPE_BF16: _ClassVar[DType]
    DTYPE_I8: _ClassVar[DType]
    DTYPE_U8: _ClassVar[DType]
    DTYPE_I16: _ClassVar[DType]
    DTYPE_I32: _ClassVar[DType]
    DTYPE_I64: _ClassVar[DType]

class QuantType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUANT_TYPE_UNSPECIFIED: _ClassVar[QuantType]
    QUANT_TYPE_I2_S: _ClassVar[QuantType]
    QUANT_TYPE_TL1: _ClassVar[QuantType]
    QUANT_TYPE_TL2: _ClassVar[QuantType]
    QUANT_TYPE_TQ1_0: _ClassVar[QuantType]
    QUANT_TYPE_TQ2_0: _ClassVar[QuantType]
    QUANT_TYPE_F16: _ClassVar[QuantType]
    QUANT_TYPE_BF16: _ClassVar[QuantType]
    QUANT_TYPE_F32: _ClassVar[QuantType]
    QUANT_TYPE_Q8_0: _ClassVar[QuantType]
PLUGIN_KIND_UNSPECIFIED: PluginKind
PLUGIN_KIND_BACKEND: PluginKind
PLUGIN_KIND_SCHEDULER: PluginKind
PLUGIN_KIND_QUANTIZER: PluginKind
DTYPE_UNSPECIFIED: DType
DTYPE_F32: DType
DTYPE_F16: DType
DTYPE_BF16: DType
DTYPE_I8: DType
DTYPE_U8: DType
DTYPE_I16: DType
DTYPE_I32: DType
DTYPE_I64: DType
QUANT_TYPE_UNSPECIFIED: QuantType
QUANT_TYPE_I2_S: QuantType
QUANT_TYPE_TL1: QuantType
QUANT_TYPE_TL2: QuantType
QUANT_TYPE_TQ1_0: QuantType
QUANT_TYPE_TQ2_0: QuantType
QUANT_TYPE_F16: QuantType
QUANT_TYPE_BF16: QuantType
QUANT_TYPE_F32: QuantType
QUANT_TYPE_Q8_0: QuantType

class SharedSegment(_message.Message):
    __slots__ = ("name", "size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class TensorHandle(_message.Message):
    __slots__ = ("segment", "offset", "dtype", "shape", "nbytes", "inline_data")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    INLINE_DATA_FIELD_NUMBER: _ClassVar[int]
    segment: str
    offset: int
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    nbytes: int
    inline_data: bytes
    def __init__(self, segment: _Optional[str] = ..., offset: _Optional[int] = ..., dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., nbytes: _Optional[int] = ..., inline_data: _Optional[bytes] = ...) -> None: ...

class QuantizerConfig(_message.Message):
    __slots__ = ("quant_type", "group_size", "sym", "per_channel", "quant_embd")
    QUANT_TYPE_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    SYM_FIELD_NUMBER: _ClassVar[int]
    PER_CHANNEL_FIELD_NUMBER: _ClassVar[int]
    QUANT_EMBD_FIELD_NUMBER: _ClassVar[int]
    quant_type: QuantType
    group_size: int
    sym: bool
    per_channel: bool
    quant_embd: bool
    def __init__(self, quant_type: _Optional[_Union[QuantType, str]] = ..., group_size: _Optional[int] = ..., sym: _Optional[bool] = ..., per_channel: _Optional[bool] = ..., quant_embd: _Optional[bool] = ...) -> None: ...

class SchedulerConfig(_message.Message):
    __slots__ = ("scheduler_type", "max_batch_size", "preempt_enabled", "load_threshold", "device_affinity")
    SCHEDULER_TYPE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    PREEMPT_ENABLED_FIELD_NUMBER: _ClassVar[int]
    LOAD_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DEVICE_AFFINITY_FIELD_NUMBER: _ClassVar[int]
    scheduler_type: str
    max_batch_size: int
    preempt_enabled: bool
    load_threshold: float
    device_affinity: str
    def __init__(self, scheduler_type: _Optional[str] = ..., max_batch_size: _Optional[int] = ..., preempt_enabled: _Optional[bool] = ..., load_threshold: _Optional[float] = ..., device_affinity: _Optional[str] = ...) -> None: ...

class BackendConfig(_message.Message):
    __slots__ = ("backend", "device_id", "memory_limit", "stream_count", "tensor_cores")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    STREAM_COUNT_FIELD_NUMBER: _ClassVar[int]
    TENSOR_CORES_FIELD_NUMBER: _ClassVar[int]
    backend: str
    device_id: int
    memory_limit: int
    stream_count: int
    tensor_cores: bool
    def __init__(self, backend: _Optional[str] = ..., device_id: _Optional[int] = ..., memory_limit: _Optional[int] = ..., stream_count: _Optional[int] = ..., tensor_cores: _Optional[bool] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("name", "kind", "version", "api_version", "capabilities", "pid")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: PluginKind
    version: str
    api_version: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    pid: int
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[PluginKind, str]] = ..., version: _Optional[str] = ..., api_version: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., pid: _Optional[int] = ...) -> None: ...

class ConfigureRequest(_message.Message):
    __slots__ = ("backend", "scheduler", "quantizer", "validate_only")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    QUANTIZER_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    backend: BackendConfig
    scheduler: SchedulerConfig
    quantizer: QuantizerConfig
    validate_only: bool
    def __init__(self, backend: _Optional[_Union[BackendConfig, _Mapping]] = ..., scheduler: _Optional[_Union[SchedulerConfig, _Mapping]] = ..., quantizer: _Optional[_Union[QuantizerConfig, _Mapping]] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class ConfigureResponse(_message.Message):
    __slots__ = ("backend", "scheduler", "quantizer", "warnings")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    QUANTIZER_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    backend: BackendConfig
    scheduler: SchedulerConfig
    quantizer: QuantizerConfig
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, backend: _Optional[_Union[BackendConfig, _Mapping]] = ..., scheduler: _Optional[_Union[SchedulerConfig, _Mapping]] = ..., quantizer: _Optional[_Union[QuantizerConfig, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class MetricsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Metric(_message.Message):
    __slots__ = ("name", "help", "type", "value", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    HELP_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    help: str
    type: str
    value: float
    labels: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., help: _Optional[str] = ..., type: _Optional[str] = ..., value: _Optional[float] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class MetricsResponse(_message.Message):
    __slots__ = ("metrics",)
    METRICS_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.RepeatedCompositeFieldContainer[Metric]
    def __init__(self, metrics: _Optional[_Iterable[_Union[Metric, _Mapping]]] = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ("drain", "deadline_ms")
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    drain: bool
    deadline_ms: int
    def __init__(self, drain: _Optional[bool] = ..., deadline_ms: _Optional[int] = ...) -> None: ...

class ShutdownResponse(_message.Message):
    __slots__ = ("in_flight",)
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    in_flight: int
    def __init__(self, in_flight: _Optional[int] = ...) -> None: ...

class FastLaneRequest(_message.Message):
    __slots__ = ("slot_bytes",)
    SLOT_BYTES_FIELD_NUMBER: _ClassVar[int]
    slot_bytes: int
    def __init__(self, slot_bytes: _Optional[int] = ...) -> None: ...

class FastLaneResponse(_message.Message):
    __slots__ = ("enabled", "methods", "reason")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    methods: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    def __init__(self, enabled: _Optional[bool] = ..., methods: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ...) -> None: ...
