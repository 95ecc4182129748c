from tritium.protos.tritium.plugin.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ActivationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTIVATION_KIND_UNSPECIFIED: _ClassVar[ActivationKind]
    ACTIVATION_KIND_SILU: _ClassVar[ActivationKind]
    ACTIVATION_KIND_RELU2: _ClassVar[ActivationKind]
    ACTIVATION_KIND_GELU: _ClassVar[ActivationKind]
ACTIVATION_KIND_UNSPECIFIED: ActivationKind
ACTIVATION_KIND_SILU: ActivationKind
ACTIVATION_KIND_RELU2: ActivationKind
ACTIVATION_KIND_GELU: ActivationKind

class DeviceInfo(_message.Message):
    __slots__ = ("backend", "device_id", "name", "memory_total", "memory_free", "compute_units", "score", "features")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FREE_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_UNITS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    backend: str
    device_id: int
    name: str
    memory_total: int
    memory_free: int
    compute_units: int
    score: float
    features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, backend: _Optional[str] = ..., device_id: _Optional[int] = ..., name: _Optional[str] = ..., memory_total: _Optional[int] = ..., memory_free: _Optional[int] = ..., compute_units: _Optional[int] = ..., score: _Optional[float] = ..., features: _Optional[_Iterable[str]] = ...) -> None: ...

class ProbeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProbeResponse(_message.Message):
    __slots__ = ("devices", "capabilities")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[DeviceInfo]
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, devices: _Optional[_Iterable[_Union[DeviceInfo, _Mapping]]] = ..., capabilities: _Optional[_Iterable[str]] = ...) -> None: ...

class InitRequest(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: _common_pb2.BackendConfig
    def __init__(self, config: _Optional[_Union[_common_pb2.BackendConfig, _Mapping]] = ...) -> None: ...

class InitResponse(_message.Message):
    __slots__ = ("device", "applied")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    device: DeviceInfo
    applied: _common_pb2.BackendConfig
    def __init__(self, device: _Optional[_Union[DeviceInfo, _Mapping]] = ..., applied: _Optional[_Union[_common_pb2.BackendConfig, _Mapping]] = ...) -> None: ...

class AllocRequest(_message.Message):
    __slots__ = ("dtype", "shape")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    dtype: _common_pb2.DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, dtype: _Optional[_Union[_common_pb2.DType, str]] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class AllocResponse(_message.Message):
    __slots__ = ("buffer_id", "handle")
    BUFFER_ID_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    buffer_id: int
    handle: _common_pb2.TensorHandle
    def __init__(self, buffer_id: _Optional[int] = ..., handle: _Optional[_Union[_common_pb2.TensorHandle, _Mapping]] = ...) -> None: ...

class FreeRequest(_message.Message):
    __slots__ = ("buffer_id",)
    BUFFER_ID_FIELD_NUMBER: _ClassVar[int]
    buffer_id: int
    def __init__(self, buffer_id: _Optional[int] = ...) -> None: ...

class FreeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MatMulRequest(_message.Message):
    __slots__ = ("a", "b", "out", "transpose_b")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    OUT_FIELD_NUMBER: _ClassVar[int]
    TRANSPOSE_B_FIELD_NUMBER: _ClassVar[int]
    a: _common_pb2.TensorHandle
    b: _common_pb2.TensorHandle
    out: _common_pb2.TensorHandle
    transpose_b: bool
    def __init__(self, a: _Optional[_Union[_common_pb2.TensorHandle, _Mapping]] = ..., b: _Optional[_Union[_common_pb2.TensorHandle, _Mapping]] = ..., out: _Optional[_Union[_common_pb2.TensorHandle, _Mapping]] = ..., transpose_b: _Optional[bool] = ...) -> None: ...

class MatMulResponse(_message.Message):
    __slots__ = ("out",)
    OUT_FIELD_NUMBER: _ClassVar[int]
    out: _common_pb2.TensorHandle
    def __init__(self, out: _Optional[_Union[_common_pb2.TensorHandle, _Mapping]] = ...) -> None: ...

class ActivationRequest(_message.Message):
    __slots__ = ("kind", "input", "out")
    KIND_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUT_FIELD_NUMBER: _ClassVar[int]
    kind: ActivationKind
    input: _common_pb2.TensorHandle
    out: _common_pb2.TensorHandle
    def __init__(self, kind: _Optional[_Union[ActivationKind, str]] = ..., input: _Optional[_Union[_common_pb2.TensorHandle, _Mapping]] = ..., out: _Optional[_Union[_common_pb2.TensorHandle, _Mapping]] = ...) -> None: ...

class ActivationResponse(_message.Message):
    __slots__ = ("out",)
    OUT_FIELD_NUMBER: _ClassVar[int]
    out: _common_pb2.TensorHandle
    def __init__(self, out: _Optional[_Union[_common_pb2.TensorHandle, _Mapping]] = ...) -> None: ...

class SyncRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SyncResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LoadModelRequest(_message.Message):
    __slots__ = ("path", "format", "n_ctx", "threads", "kv_dtype", "max_sequences", "max_logit_rows")
    PATH_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    N_CTX_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    KV_DTYPE_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    MAX_LOGIT_ROWS_FIELD_NUMBER: _ClassVar[int]
    path: str
    format: str
    n_ctx: int
    threads: int
    kv_dtype: str
    max_sequences: int
    max_logit_rows: int
    def __init__(self, path: _Optional[str] = ..., format: _Optional[str] = ..., n_ctx: _Optional[int] = ..., threads: _Optional[int] = ..., kv_dtype: _Optional[str] = ..., max_sequences: _Optional[int] = ..., max_logit_rows: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("arch", "n_vocab", "n_embd", "n_layer", "n_ctx", "format")
    ARCH_FIELD_NUMBER: _ClassVar[int]
    N_VOCAB_FIELD_NUMBER: _ClassVar[int]
    N_EMBD_FIELD_NUMBER: _ClassVar[int]
    N_LAYER_FIELD_NUMBER: _ClassVar[int]
    N_CTX_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    arch: str
    n_vocab: int
    n_embd: int
    n_layer: int
    n_ctx: int
    format: str
    def __init__(self, arch: _Optional[str] = ..., n_vocab: _Optional[int] = ..., n_embd: _Optional[int] = ..., n_layer: _Optional[int] = ..., n_ctx: _Optional[int] = ..., format: _Optional[str] = ...) -> None: ...

class LoadModelResponse(_message.Message):
    __slots__ = ("model_id", "model", "logits_segment", "interpretation")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LOGITS_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    INTERPRETATION_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model: ModelInfo
    logits_segment: _common_pb2.SharedSegment
    interpretation: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model_id: _Optional[str] = ..., model: _Optional[_Union[ModelInfo, _Mapping]] = ..., logits_segment: _Optional[_Union[_common_pb2.SharedSegment, _Mapping]] = ..., interpretation: _Optional[_Iterable[str]] = ...) -> None: ...

class SequenceInput(_message.Message):
    __slots__ = ("sequence_id", "tokens", "n_past", "all_logits", "greedy_steps", "stop_token_ids", "sampling")
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    N_PAST_FIELD_NUMBER: _ClassVar[int]
    ALL_LOGITS_FIELD_NUMBER: _ClassVar[int]
    GREEDY_STEPS_FIELD_NUMBER: _ClassVar[int]
    STOP_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    sequence_id: int
    tokens: _containers.RepeatedScalarFieldContainer[int]
    n_past: int
    all_logits: bool
    greedy_steps: int
    stop_token_ids: _containers.RepeatedScalarFieldContainer[int]
    sampling: ContinuationSampling
    def __init__(self, sequence_id: _Optional[int] = ..., tokens: _Optional[_Iterable[int]] = ..., n_past: _Optional[int] = ..., all_logits: _Optional[bool] = ..., greedy_steps: _Optional[int] = ..., stop_token_ids: _Optional[_Iterable[int]] = ..., sampling: _Optional[_Union[ContinuationSampling, _Mapping]] = ...) -> None: ...

class ContinuationSampling(_message.Message):
    __slots__ = ("temperature", "top_k", "top_p", "min_p", "rng", "repetition_penalty", "penalty_last_n", "frequency_penalty", "presence_penalty", "prompt_tail", "generated", "logprobs")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    MIN_P_FIELD_NUMBER: _ClassVar[int]
    RNG_FIELD_NUMBER: _ClassVar[int]
    REPETITION_PENALTY_FIELD_NUMBER: _ClassVar[int]
    PENALTY_LAST_N_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_PENALTY_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_PENALTY_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TAIL_FIELD_NUMBER: _ClassVar[int]
    GENERATED_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_k: int
    top_p: float
    min_p: float
    rng: Pcg64State
    repetition_penalty: float
    penalty_last_n: int
    frequency_penalty: float
    presence_penalty: float
    prompt_tail: _containers.RepeatedScalarFieldContainer[int]
    generated: _containers.RepeatedScalarFieldContainer[int]
    logprobs: int
    def __init__(self, temperature: _Optional[float] = ..., top_k: _Optional[int] = ..., top_p: _Optional[float] = ..., min_p: _Optional[float] = ..., rng: _Optional[_Union[Pcg64State, _Mapping]] = ..., repetition_penalty: _Optional[float] = ..., penalty_last_n: _Optional[int] = ..., frequency_penalty: _Optional[float] = ..., presence_penalty: _Optional[float] = ..., prompt_tail: _Optional[_Iterable[int]] = ..., generated: _Optional[_Iterable[int]] = ..., logprobs: _Optional[int] = ...) -> None: ...

class TokenLogprobs(_message.Message):
    __slots__ = ("logprob", "top_ids", "top_logprobs")
    LOGPROB_FIELD_NUMBER: _ClassVar[int]
    TOP_IDS_FIELD_NUMBER: _ClassVar[int]
    TOP_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    logprob: float
    top_ids: _containers.RepeatedScalarFieldContainer[int]
    top_logprobs: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, logprob: _Optional[float] = ..., top_ids: _Optional[_Iterable[int]] = ..., top_logprobs: _Optional[_Iterable[float]] = ...) -> None: ...

class Pcg64State(_message.Message):
    __slots__ = ("state_high", "state_low", "inc_high", "inc_low", "has_uint32", "uinteger")
    STATE_HIGH_FIELD_NUMBER: _ClassVar[int]
    STATE_LOW_FIELD_NUMBER: _ClassVar[int]
    INC_HIGH_FIELD_NUMBER: _ClassVar[int]
    INC_LOW_FIELD_NUMBER: _ClassVar[int]
    HAS_UINT32_FIELD_NUMBER: _ClassVar[int]
    UINTEGER_FIELD_NUMBER: _ClassVar[int]
    state_high: int
    state_low: int
    inc_high: int
    inc_low: int
    has_uint32: bool
    uinteger: int
    def __init__(self, state_high: _Optional[int] = ..., state_low: _Optional[int] = ..., inc_high: _Optional[int] = ..., inc_low: _Optional[int] = ..., has_uint32: _Optional[bool] = ..., uinteger: _Optional[int] = ...) -> None: ...

class StepRequest(_message.Message):
    __slots__ = ("step_id", "batch")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    step_id: int
    batch: _containers.RepeatedCompositeFieldContainer[SequenceInput]
    def __init__(self, step_id: _Optional[int] = ..., batch: _Optional[_Iterable[_Union[SequenceInput, _Mapping]]] = ...) -> None: ...

class SequenceOutput(_message.Message):
    __slots__ = ("sequence_id", "logits", "n_past", "greedy_tokens", "rng", "logprobs")
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    N_PAST_FIELD_NUMBER: _ClassVar[int]
    GREEDY_TOKENS_FIELD_NUMBER: _ClassVar[int]
    RNG_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    sequence_id: int
    logits: _common_pb2.TensorHandle
    n_past: int
    greedy_tokens: _containers.RepeatedScalarFieldContainer[int]
    rng: Pcg64State
    logprobs: _containers.RepeatedCompositeFieldContainer[TokenLogprobs]
    def __init__(self, sequence_id: _Optional[int] = ..., logits: _Optional[_Union[_common_pb2.TensorHandle, _Mapping]] = ..., n_past: _Optional[int] = ..., greedy_tokens: _Optional[_Iterable[int]] = ..., rng: _Optional[_Union[Pcg64State, _Mapping]] = ..., logprobs: _Optional[_Iterable[_Union[TokenLogprobs, _Mapping]]] = ...) -> None: ...

class StepResponse(_message.Message):
    __slots__ = ("step_id", "outputs", "compute_us")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_US_FIELD_NUMBER: _ClassVar[int]
    step_id: int
    outputs: _containers.RepeatedCompositeFieldContainer[SequenceOutput]
    compute_us: int
    def __init__(self, step_id: _Optional[int] = ..., outputs: _Optional[_Iterable[_Union[SequenceOutput, _Mapping]]] = ..., compute_us: _Optional[int] = ...) -> None: ...

class CleanupRequest(_message.Message):
    __slots__ = ("sequence_ids", "all")
    SEQUENCE_IDS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    sequence_ids: _containers.RepeatedScalarFieldContainer[int]
    all: bool
    def __init__(self, sequence_ids: _Optional[_Iterable[int]] = ..., all: _Optional[bool] = ...) -> None: ...

class CleanupResponse(_message.Message):
    __slots__ = ("live_sequences",)
    LIVE_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    live_sequences: int
    def __init__(self, live_sequences: _Optional[int] = ...) -> None: ...
