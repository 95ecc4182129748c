"""The seed parameter tables as defaults and checks for the config messages of tritium.plugin.v1.

A config message leaves fields unset to mean "the default"; `with_defaults` fills them in, and
`validate` raises ConfigError naming the field, the value and what is allowed.
"""

from __future__ import annotations

from google.protobuf.message import Message
from tritium.protos.tritium.plugin.v1 import common_pb2

SCHEDULER_TYPES = ("round_robin", "load_aware", "energy", "latency")

# field -> default, per config message (the seed's parameter tables).
DEFAULTS: dict[str, dict[str, object]] = {
    "QuantizerConfig": {
        "quant_type": common_pb2.QUANT_TYPE_I2_S,
        "group_size": 32,
        "sym": True,
        "per_channel": False,
        "quant_embd": False,
    },
    "SchedulerConfig": {
        "scheduler_type": "load_aware",
        "max_batch_size": 32,
        "preempt_enabled": False,
        "load_threshold": 0.8,
        "device_affinity": "auto",
    },
    "BackendConfig": {
        "backend": "auto",
        "device_id": 0,
        "memory_limit": 0,
        "stream_count": 1,
        "tensor_cores": True,
    },
}


class ConfigError(ValueError):
    """A configuration value outside what the plugin accepts."""


def _is_set(msg: Message, field: str) -> bool:
    desc = msg.DESCRIPTOR.fields_by_name[field]
    if desc.has_presence:
        return msg.HasField(field)
    return bool(getattr(msg, field))  # proto3 implicit presence: the zero value means unset


def with_defaults(msg: Message) -> Message:
    """A copy of a config message with every unset field set to its seed default."""
    out = type(msg)()
    out.CopyFrom(msg)
    for field, default in DEFAULTS[msg.DESCRIPTOR.name].items():
        if not _is_set(out, field):
            setattr(out, field, default)
    return out


def validate(
    msg: Message,
    *,
    supported_policies: tuple[str, ...] = SCHEDULER_TYPES,
    backends: tuple[str, ...] | None = None,
) -> Message:
    """Fill defaults, check ranges, return the effective config; ConfigError names the bad field."""
    cfg = with_defaults(msg)
    name = msg.DESCRIPTOR.name
    if name == "QuantizerConfig":
        if cfg.group_size <= 0:
            raise ConfigError(f"QuantizerConfig.group_size must be > 0, found {cfg.group_size}")
    elif name == "SchedulerConfig":
        if cfg.scheduler_type not in supported_policies:
            raise ConfigError(
                f"SchedulerConfig.scheduler_type {cfg.scheduler_type!r} is not one of "
                f"{list(supported_policies)}"
            )
        if cfg.max_batch_size <= 0:
            raise ConfigError(f"SchedulerConfig.max_batch_size must be > 0, found {cfg.max_batch_size}")
        if not 0.0 < cfg.load_threshold <= 1.0:
            raise ConfigError(f"SchedulerConfig.load_threshold must be in (0, 1], found {cfg.load_threshold}")
        if cfg.device_affinity != "auto":
            try:
                [int(x) for x in cfg.device_affinity.split(",")]
            except ValueError:
                raise ConfigError(
                    f"SchedulerConfig.device_affinity must be 'auto' or comma-separated device ids, "
                    f"found {cfg.device_affinity!r}"
                ) from None
    elif name == "BackendConfig":
        if backends is not None and cfg.backend not in ("auto", *backends):
            raise ConfigError(f"BackendConfig.backend {cfg.backend!r} is not one of {['auto', *backends]}")
        if cfg.device_id < 0:
            raise ConfigError(f"BackendConfig.device_id must be >= 0, found {cfg.device_id}")
        if cfg.stream_count <= 0:
            raise ConfigError(f"BackendConfig.stream_count must be > 0, found {cfg.stream_count}")
    return cfg
