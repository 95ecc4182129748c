"""Settings of `tritium serve`: engine limits, scheduling, runtime and listener, from a TOML file.

Every field has a default, so a config file names only what it changes. Unknown keys and values of the
wrong type or range are refused with a ConfigError naming the file, the key and what was expected.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from tritium.core.errors import TritiumError

SCHEDULER_TYPES = ("round_robin", "load_aware", "energy", "latency")


class ConfigError(TritiumError):
    """A serving configuration file or value is invalid."""


@dataclass(frozen=True)
class ServingConfig:
    """What the server is allowed to do; the field names are the keys of the `[serving]` TOML table."""

    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int | None = None  # the tritium.serving.v1 gRPC API on host:grpc_port; None = off
    # Engine: continuous batching.
    max_batch_size: int = 8  # sequences per engine step
    max_batch_tokens: int = 256  # tokens per engine step, prefill chunks included
    prefill_chunk: int = 64  # prompt tokens one request may prefill per step
    max_queue: int = 64  # waiting requests before new ones are refused with 429
    retry_after_s: int = 1  # Retry-After of a 429
    # Scheduling (the in-core policy's names match the scheduler plugins' SchedulerConfig).
    scheduler_type: str = "load_aware"
    preempt_enabled: bool = False
    # A preempted request re-feeds its history with its original chunk boundaries (bit-exact under the
    # fp16 emulation, k steps for k decoded tokens) or, False, in prefill_chunk chunks (faster).
    exact_recompute: bool = True
    # Decodes through a backend with the capability greedy_steps (and sampled_steps for requests
    # that sample, or have penalties or logprobs): up to this many decode steps per backend call, the
    # backend choosing the tokens between them as the request's own sampler would (the same tokens,
    # continuing its generator), used while no request waits. Saves the call's fixed cost on all but
    # one step; tokens then stream in bursts of up to this many. 1: one call per token.
    decode_steps: int = 4
    load_threshold: float = 0.8
    device_affinity: str = "auto"  # devices new requests may use: "auto" (all) or ids, e.g. "0,2"
    devices: int = 1  # backend instances (plugin processes, or in-process runtimes with in_process)
    # Plugins (see core/serving/plugin_stack.py): by default the model runs in `devices` backend plugin
    # processes and the step's placement in the scheduler plugin; in_process runs both in this process.
    in_process: bool = False
    backend_plugin: str = "cpu"
    scheduler_plugin: str = "basic"
    pin_devices: bool = False  # pin backend i to its share of this process's cores (sched_setaffinity)
    admin_port: int | None = None  # the tritium.serving.v1 Admin gRPC service on host:admin_port
    # Runtime.
    n_ctx: int | None = None  # default: the model's
    threads: int | None = None
    kv_dtype: str | None = None  # "f32" | "f16"; default: as the model's origin runs it (f16 for GGUF)
    # API limits.
    max_tokens_limit: int = 4096  # largest max_tokens a request may ask for
    default_max_tokens: int = 16  # /v1/completions when max_tokens is absent (OpenAI's default)
    max_n: int = 8  # largest `n` (choices per prompt)
    model_id: str | None = None  # the id /v1/models lists; default: the model file's stem

    def validated(self) -> ServingConfig:
        """Return self, or raise ConfigError naming the first invalid field."""
        positive = ("max_batch_size", "max_batch_tokens", "prefill_chunk", "max_queue", "retry_after_s",
                    "devices", "max_tokens_limit", "default_max_tokens", "max_n", "decode_steps")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name}: expected an integer >= 1, got {value!r}")
        for name in ("n_ctx", "threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"{name}: expected an integer >= 1 or absent, got {value!r}")
        for name in ("port", "grpc_port", "admin_port"):
            value = getattr(self, name)
            if value is None and name != "port":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
                raise ConfigError(f"{name}: expected an integer in [0, 65535], got {value!r}")
        if self.scheduler_type not in SCHEDULER_TYPES:
            raise ConfigError(f"scheduler_type: expected one of {', '.join(SCHEDULER_TYPES)}, "
                              f"got {self.scheduler_type!r}")
        if not isinstance(self.load_threshold, (int, float)) or not 0.0 < self.load_threshold <= 1.0:
            raise ConfigError(f"load_threshold: expected a number in (0, 1], got {self.load_threshold!r}")
        for name in ("preempt_enabled", "exact_recompute", "in_process", "pin_devices"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: expected true or false, got {getattr(self, name)!r}")
        affinity = self.device_affinity
        ok = isinstance(affinity, str) and (affinity == "auto" or all(
            x.strip().isdigit() for x in affinity.split(",")))
        if not ok:
            raise ConfigError(
                f"device_affinity: expected 'auto' or comma-separated device ids, got {affinity!r}")
        if affinity != "auto" and max(int(x) for x in affinity.split(",")) >= self.devices:
            raise ConfigError(f"device_affinity: {affinity!r} names a device beyond devices={self.devices}")
        for name in ("backend_plugin", "scheduler_plugin"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"{name}: expected a plugin name, got {getattr(self, name)!r}")
        if self.kv_dtype not in (None, "f32", "f16"):
            raise ConfigError(f"kv_dtype: expected 'f32', 'f16' or absent, got {self.kv_dtype!r}")
        return self

    def with_overrides(self, **overrides: Any) -> ServingConfig:
        """A copy with the given fields replaced (None values are ignored), validated."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None}).validated()


def load_serving_config(path: str | Path | None) -> ServingConfig:
    """The defaults, overridden by the `[serving]` table of the TOML file at `path` (if given)."""
    if path is None:
        return ServingConfig()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the config file ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None
    table = data.get("serving", data)
    if not isinstance(table, dict):
        raise ConfigError(f"{p}: expected a [serving] table, got {type(table).__name__}")
    known = {f.name for f in fields(ServingConfig)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{p}: unknown key {unknown[0]!r} in [serving]; "
                          f"known keys: {', '.join(sorted(known))}")
    try:
        return replace(ServingConfig(), **table).validated()
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
