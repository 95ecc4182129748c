"""The operator's `tritium.serving.v1.Admin` service over a Supervisor: list plugins, and hot-plug,
hot-swap and hot-unplug them while the engine runs (nothing restarts the core).

The serving layer registers it on its admin listener:
`serving_pb2_grpc.add_AdminServicer_to_server(AdminService(supervisor), server)`.
`tritium serve --admin-port P` does so over its `PluginStack` (core/serving/plugin_stack.py), which has
the same calls (status, add, replace, remove) over one supervisor per device plus the scheduler's:
there a device's backend is listed as `<plugin>@<device>`, AddPlugin of a backend package is a new
device, and RemovePlugin of a device moves its requests to the other devices before stopping it.
"""

from __future__ import annotations

import grpc
from tritium.protos.tritium.serving.v1 import serving_pb2, serving_pb2_grpc

from .errors import ManifestError, PluginError, PluginLoadError
from .supervisor import Supervisor


def plugin_status(row: dict[str, object]) -> serving_pb2.PluginStatus:
    """A Supervisor.status() row as the PluginStatus message."""
    return serving_pb2.PluginStatus(**row)


def status_row(msg: serving_pb2.PluginStatus) -> dict[str, object]:
    """A PluginStatus message as a Supervisor.status() row."""
    return {f.name: getattr(msg, f.name) for f in serving_pb2.PluginStatus.DESCRIPTOR.fields}


class AdminService(serving_pb2_grpc.AdminServicer):
    """Admin calls mapped onto the supervisor (a Supervisor, or anything with its status/add/replace/
    remove calls, such as the server's PluginStack); errors become gRPC statuses naming the plugin and
    why."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._sup = supervisor

    def _row(self, name: str) -> serving_pb2.PluginStatus:
        for row in self._sup.status():
            if row["name"] == name:
                return plugin_status(row)
        return serving_pb2.PluginStatus(name=name, state="stopped")

    @staticmethod
    def _abort(context: grpc.ServicerContext, exc: PluginError) -> None:
        code = (
            grpc.StatusCode.INVALID_ARGUMENT
            if isinstance(exc, ManifestError)
            else grpc.StatusCode.FAILED_PRECONDITION
        )
        if isinstance(exc, PluginLoadError) and "not registered" in exc.reason:
            code = grpc.StatusCode.NOT_FOUND
        context.abort(code, str(exc))

    def ListPlugins(self, request, context):  # noqa: ANN001, ANN201, N802
        return serving_pb2.ListPluginsResponse(plugins=[plugin_status(r) for r in self._sup.status()])

    def AddPlugin(self, request, context):  # noqa: ANN001, ANN201, N802
        try:
            inst = self._sup.add(request.path)
        except PluginError as exc:
            self._abort(context, exc)
        return serving_pb2.PluginChangeResponse(plugin=self._row(inst.name))

    def ReplacePlugin(self, request, context):  # noqa: ANN001, ANN201, N802
        try:
            self._sup.replace(request.name, request.path)
        except PluginError as exc:
            self._abort(context, exc)
        return serving_pb2.PluginChangeResponse(plugin=self._row(request.name))

    def RemovePlugin(self, request, context):  # noqa: ANN001, ANN201, N802
        try:
            row = self._row(request.name)
            self._sup.remove(request.name, drain=request.drain)
        except PluginError as exc:
            self._abort(context, exc)
        row.state, row.pid = "stopped", 0
        return serving_pb2.PluginChangeResponse(plugin=row)
