from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QueuedRequest(_message.Message):
    __slots__ = ("request_id", "prompt_tokens", "processed_tokens", "generated_tokens", "max_tokens", "priority", "running", "device_id", "arrival_us", "pending_tokens")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    ARRIVAL_US_FIELD_NUMBER: _ClassVar[int]
    PENDING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    prompt_tokens: int
    processed_tokens: int
    generated_tokens: int
    max_tokens: int
    priority: int
    running: bool
    device_id: int
    arrival_us: int
    pending_tokens: int
    def __init__(self, request_id: _Optional[int] = ..., prompt_tokens: _Optional[int] = ..., processed_tokens: _Optional[int] = ..., generated_tokens: _Optional[int] = ..., max_tokens: _Optional[int] = ..., priority: _Optional[int] = ..., running: _Optional[bool] = ..., device_id: _Optional[int] = ..., arrival_us: _Optional[int] = ..., pending_tokens: _Optional[int] = ...) -> None: ...

class DeviceLoad(_message.Message):
    __slots__ = ("device_id", "load", "memory_free", "running", "capacity", "available", "efficiency", "step_us")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FREE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    EFFICIENCY_FIELD_NUMBER: _ClassVar[int]
    STEP_US_FIELD_NUMBER: _ClassVar[int]
    device_id: int
    load: float
    memory_free: int
    running: int
    capacity: int
    available: bool
    efficiency: float
    step_us: float
    def __init__(self, device_id: _Optional[int] = ..., load: _Optional[float] = ..., memory_free: _Optional[int] = ..., running: _Optional[int] = ..., capacity: _Optional[int] = ..., available: _Optional[bool] = ..., efficiency: _Optional[float] = ..., step_us: _Optional[float] = ...) -> None: ...

class ScheduleRequest(_message.Message):
    __slots__ = ("step_id", "queue", "devices", "max_batch_tokens", "prefill_chunk")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PREFILL_CHUNK_FIELD_NUMBER: _ClassVar[int]
    step_id: int
    queue: _containers.RepeatedCompositeFieldContainer[QueuedRequest]
    devices: _containers.RepeatedCompositeFieldContainer[DeviceLoad]
    max_batch_tokens: int
    prefill_chunk: int
    def __init__(self, step_id: _Optional[int] = ..., queue: _Optional[_Iterable[_Union[QueuedRequest, _Mapping]]] = ..., devices: _Optional[_Iterable[_Union[DeviceLoad, _Mapping]]] = ..., max_batch_tokens: _Optional[int] = ..., prefill_chunk: _Optional[int] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("request_id", "device_id", "tokens")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    device_id: int
    tokens: int
    def __init__(self, request_id: _Optional[int] = ..., device_id: _Optional[int] = ..., tokens: _Optional[int] = ...) -> None: ...

class ScheduleResponse(_message.Message):
    __slots__ = ("step_id", "batch", "preempt")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    PREEMPT_FIELD_NUMBER: _ClassVar[int]
    step_id: int
    batch: _containers.RepeatedCompositeFieldContainer[Assignment]
    preempt: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, step_id: _Optional[int] = ..., batch: _Optional[_Iterable[_Union[Assignment, _Mapping]]] = ..., preempt: _Optional[_Iterable[int]] = ...) -> None: ...

class UpdateLoadRequest(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[DeviceLoad]
    def __init__(self, devices: _Optional[_Iterable[_Union[DeviceLoad, _Mapping]]] = ...) -> None: ...

class UpdateLoadResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DevicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[DeviceLoad]
    def __init__(self, devices: _Optional[_Iterable[_Union[DeviceLoad, _Mapping]]] = ...) -> None: ...
