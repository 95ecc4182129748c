"""Base classes a plugin author subclasses: one per kind, each the generated gRPC servicer plus the
hooks the common `Plugin` service calls (configure, metrics, capabilities, shutdown).

Unimplemented kind methods answer UNIMPLEMENTED (the generated servicers' default), which the host
reports as "plugin <name> does not implement <method>".
"""

from __future__ import annotations

from google.protobuf.message import Message
from tritium.protos.tritium.plugin.v1 import (
    backend_pb2_grpc,
    common_pb2,
    quantizer_pb2_grpc,
    scheduler_pb2_grpc,
)

from . import config as config_mod


class PluginBase:
    """Hooks shared by every kind. `kind` is "backend", "scheduler" or "quantizer"."""

    kind: str = ""
    # The oneof field of ConfigureRequest this kind accepts.
    config_field: str = ""

    def capabilities(self) -> list[str]:
        """Capability flags reported by Plugin.Info."""
        return []

    def configure(self, config: Message, validate_only: bool) -> Message:
        """Validate (and unless validate_only, apply) a config; return it with defaults filled in.

        Raise config.ConfigError for an invalid value; the SDK answers INVALID_ARGUMENT with its message.
        The default accepts anything the seed table allows.
        """
        return config_mod.validate(config)

    def metrics(self) -> list[common_pb2.Metric]:
        """Metric samples reported by Plugin.Metrics."""
        return []

    def on_shutdown(self) -> None:
        """Called once, after the server stopped serving and before the process exits."""


class BackendPlugin(PluginBase, backend_pb2_grpc.BackendServicer):
    """Base of backend plugins: implement Probe, Init, LoadModel, Step, Cleanup (+ optional per-op calls)."""

    kind = "backend"
    config_field = "backend"


class SchedulerPlugin(PluginBase, scheduler_pb2_grpc.SchedulerServicer):
    """Base of scheduler plugins: implement Schedule, UpdateLoad, Devices."""

    kind = "scheduler"
    config_field = "scheduler"


class QuantizerPlugin(PluginBase, quantizer_pb2_grpc.QuantizerServicer):
    """Base of quantizer plugins: implement CanQuantize, Quantize, Dequantize."""

    kind = "quantizer"
    config_field = "quantizer"


KIND_ENUM = {
    "backend": common_pb2.PLUGIN_KIND_BACKEND,
    "scheduler": common_pb2.PLUGIN_KIND_SCHEDULER,
    "quantizer": common_pb2.PLUGIN_KIND_QUANTIZER,
}
KIND_NAME = {v: k for k, v in KIND_ENUM.items()}

# The generated `add_<Kind>Servicer_to_server` of each kind, and its full gRPC service name.
REGISTRARS = {
    "backend": (backend_pb2_grpc.add_BackendServicer_to_server, "tritium.plugin.v1.Backend"),
    "scheduler": (scheduler_pb2_grpc.add_SchedulerServicer_to_server, "tritium.plugin.v1.Scheduler"),
    "quantizer": (quantizer_pb2_grpc.add_QuantizerServicer_to_server, "tritium.plugin.v1.Quantizer"),
}
