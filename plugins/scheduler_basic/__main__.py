"""Entry point of the `basic` scheduler plugin: `python -m tritium.plugins.scheduler_basic`."""

from __future__ import annotations

import threading

from google.protobuf.message import Message
from tritium.protos.tritium.plugin.v1 import common_pb2, scheduler_pb2
from tritium.sdk import SchedulerPlugin, serve
from tritium.sdk import config as config_mod

from .policies import POLICIES, SchedulerState, schedule

NAME = "basic"
VERSION = "0.1.0"


class BasicScheduler(SchedulerPlugin):
    """round_robin / load_aware / energy / latency scheduling over the snapshot the core sends each step."""

    def __init__(self) -> None:
        self._state = SchedulerState(
            config_mod.validate(common_pb2.SchedulerConfig(), supported_policies=POLICIES)
        )
        self._lock = threading.Lock()
        self._steps = 0

    def capabilities(self) -> list[str]:
        return ["preempt", *(f"policy:{p}" for p in POLICIES)]

    def configure(self, config: Message, validate_only: bool) -> Message:
        applied = config_mod.validate(config, supported_policies=POLICIES)
        if not validate_only:
            with self._lock:
                self._state.config = applied
        return applied

    def metrics(self) -> list[common_pb2.Metric]:
        return [
            common_pb2.Metric(
                name="schedule_calls_total", help="Schedule calls answered", type="counter", value=self._steps
            )
        ]

    def Schedule(self, request, context):  # noqa: ANN001, ANN201, N802
        with self._lock:
            self._steps += 1
            return schedule(self._state, request)

    def UpdateLoad(self, request, context):  # noqa: ANN001, ANN201, N802
        with self._lock:
            for d in request.devices:
                self._state.devices[d.device_id] = d
        return scheduler_pb2.UpdateLoadResponse()

    def Devices(self, request, context):  # noqa: ANN001, ANN201, N802
        with self._lock:
            return scheduler_pb2.DevicesResponse(devices=[d for _, d in sorted(self._state.devices.items())])


if __name__ == "__main__":
    serve(BasicScheduler(), "scheduler", NAME, VERSION)
