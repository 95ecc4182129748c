"""The plugin processes behind `tritium serve`: one backend plugin process per device and one scheduler
plugin process, each supervised (restarted on a crash, its step retried), so the core process never runs
a model kernel or a placement policy itself.

Each device has its own supervisor: a supervisor keys plugins by their manifest name, and every device
runs the same backend package (`cpu`), so device i is "the `cpu` plugin of supervisor i". Every
supervisor is a `confined_supervisor` (plugin_host/confined.py): each package's signature is checked
before each launch (a source checkout runs its unsigned builtin plugins only with
TRITIUM_ALLOW_UNSIGNED_PLUGINS=1) and each process runs in the sandbox, with the model file as an extra
read-only path of the backends. With `pin_devices`, device i's process is pinned to its share of this
process's cores (the sandbox launcher's sched_setaffinity; inherited by every thread it starts).

`PluginStack` also offers the supervisor calls the operator's Admin service and the Prometheus
collector use (`status`, `instance`, `add`, `replace`, `remove`), over every supervisor at once; a
device's plugin is named `<plugin>@<device>` there (e.g. `cpu@1`), the scheduler by its own name.
Adding a backend package is hot plug of a new device; removing `cpu@1` takes device 1 out of the engine
(its requests are preempted and recompute on the other devices: nothing is lost) and then stops it.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritium.core.serving.scheduling import InCorePolicy, ScheduleDecision, ScheduleSnapshot
from tritium.core.serving.serving_config import ServingConfig

log = logging.getLogger("tritium.serving.plugins")

def device_cores(n_devices: int, cores: list[int] | None = None) -> list[list[int]]:
    """This process's cores split into `n_devices` contiguous shares (a core may serve two devices when
    there are more devices than cores)."""
    cores = sorted(cores if cores is not None else os.sched_getaffinity(0))
    if n_devices <= len(cores):
        k = len(cores) // n_devices
        return [cores[i * k:(i + 1) * k] for i in range(n_devices)]
    return [[cores[i % len(cores)]] for i in range(n_devices)]


@dataclass
class Device:
    """One backend device: its supervisor, its client (the engine's runtime), its engine index."""

    index: int
    supervisor: Any
    plugin: str
    client: Any
    removed: bool = False

    @property
    def admin_name(self) -> str:
        return f"{self.plugin}@{self.index}"


@dataclass(frozen=True)
class AddedPlugin:
    """What `PluginStack.add` returns: the name the Admin service lists the new plugin under."""

    name: str


class FallbackPolicy:
    """The scheduler plugin's decision, or, when the plugin cannot answer even after the supervisor's
    restarts (circuit open, timeouts), the in-core policy's, so a scheduler failure never fails requests."""

    def __init__(self, primary: Any, fallback: InCorePolicy) -> None:
        self.primary = primary
        self.fallback = fallback
        self.fallbacks = 0

    def schedule(self, snapshot: ScheduleSnapshot) -> ScheduleDecision:
        try:
            return self.primary.schedule(snapshot)
        except Exception as e:  # noqa: BLE001 (any plugin failure: the step must still run)
            self.fallbacks += 1
            if self.fallbacks % 1000 == 1:  # not once per step while the plugin stays down
                log.warning("scheduler plugin failed (%s); steps are placed by the in-core policy "
                            "(%d so far)", e, self.fallbacks)
            return self.fallback.schedule(snapshot)


class PluginStack:
    """Starts, owns and stops the plugin processes of one server (module docstring)."""

    def __init__(self, config: ServingConfig, model_path: str | Path, *, discovery: Any = None,
                 restart_policy: Any = None, make_supervisor: Any = None) -> None:
        """`make_supervisor(policy=, read_paths=, cpus=)` builds each supervisor (default:
        `confined_supervisor`, signature check and sandbox)."""
        from tritium.plugin_host.discovery import discover
        from tritium.plugin_host.supervisor import RestartPolicy

        self.config = config
        self.model_path = str(Path(model_path).resolve())
        self.discovery = discovery if discovery is not None else discover()
        self.restart_policy = restart_policy or RestartPolicy(ready_wait_s=300.0)
        self.devices: list[Device] = []
        self.scheduler_supervisor: Any = None
        self.scheduler: Any = None  # SchedulerClient
        self.policy: FallbackPolicy | None = None
        self.engine: Any = None
        self._lock = threading.RLock()
        self._cores = device_cores(config.devices)
        self._make_supervisor = make_supervisor

    # ---- start / stop -------------------------------------------------------------------------------
    def _supervisor(self, **sandbox: Any) -> Any:
        if self._make_supervisor is not None:
            return self._make_supervisor(policy=self.restart_policy, **sandbox)
        from tritium.plugin_host.confined import confined_supervisor

        return confined_supervisor(policy=self.restart_policy, **sandbox)

    def _threads(self, cpus: list[int]) -> int:
        if self.config.threads:
            return self.config.threads
        if self.config.pin_devices:
            return len(cpus)
        return max(1, len(os.sched_getaffinity(0)) // max(1, self.config.devices))

    def _start_device(self, manifest: Any, index: int, layer: str) -> Device:
        from tritium.plugin_host.client import BackendClient

        cpus = self._cores[index % len(self._cores)]
        sup = self._supervisor(read_paths=(self.model_path,),
                               cpus=tuple(cpus) if self.config.pin_devices else ())
        try:
            sup.register(manifest, layer)
            sup.start(manifest.name)
            # The engine samples each step's rows before its next step: views of the segment suffice.
            client = BackendClient(sup, manifest.name, step_timeout_s=600.0, load_timeout_s=600.0,
                                   copy_logits=False)
            cap = self.config.max_batch_size
            client.load_model(self.model_path, n_ctx=self.config.n_ctx or 0, threads=self._threads(cpus),
                              kv_dtype=self.config.kv_dtype or "",
                              max_sequences=2 * cap + 2, max_logit_rows=cap)
            # Compile (or load from numba's cache) every kernel now, not in the first client's request.
            for tokens in ([0, 0], [0]):
                seq = client.new_sequence()
                client.step([(seq, tokens)])
                client.release(seq)
        except BaseException:
            sup.close()
            raise
        return Device(index, sup, manifest.name, client)

    def start(self) -> tuple[list[Any], FallbackPolicy]:
        """Start every device and the scheduler; return the engine's runtimes and its policy."""
        from tritium.plugin_host.client import SchedulerClient
        from tritium.protos.tritium.plugin.v1 import common_pb2

        cfg = self.config
        try:
            backend = self.discovery.require(cfg.backend_plugin)
            layer = self.discovery.plugins[cfg.backend_plugin].layer
            for i in range(cfg.devices):
                self.devices.append(self._start_device(backend, i, layer))
            sched = self.discovery.require(cfg.scheduler_plugin)
            self.scheduler_supervisor = self._supervisor()
            self.scheduler_supervisor.register(sched, self.discovery.plugins[cfg.scheduler_plugin].layer)
            self.scheduler_supervisor.start(sched.name)
            self.scheduler = SchedulerClient(self.scheduler_supervisor, sched.name,
                                             prefill_chunk=cfg.prefill_chunk)
            self.scheduler.configure(common_pb2.SchedulerConfig(
                scheduler_type=cfg.scheduler_type, max_batch_size=cfg.max_batch_size,
                preempt_enabled=cfg.preempt_enabled, load_threshold=cfg.load_threshold,
                device_affinity=cfg.device_affinity))
        except BaseException:
            self.close()
            raise
        fallback = InCorePolicy(max_batch_size=cfg.max_batch_size, prefill_chunk=cfg.prefill_chunk,
                                preempt_enabled=cfg.preempt_enabled,
                                placement=cfg.scheduler_type,  # type: ignore[arg-type]
                                load_threshold=cfg.load_threshold, device_affinity=cfg.device_affinity)
        self.policy = FallbackPolicy(self.scheduler, fallback)
        return [d.client for d in self.devices], self.policy

    def attach(self, engine: Any) -> None:
        """The engine whose devices hot plug changes."""
        self.engine = engine

    def close(self) -> None:
        """Stop every plugin process."""
        with self._lock:
            for d in self.devices:
                try:
                    d.client.close()
                finally:
                    d.supervisor.close()
            if self.scheduler_supervisor is not None:
                self.scheduler_supervisor.close()

    # ---- the supervisor calls of the Admin service and the metrics collector --------------------------
    def _supervisors(self) -> list[tuple[Any, str | None]]:
        """(supervisor, device name prefix or None)."""
        out: list[tuple[Any, str | None]] = [(d.supervisor, f"@{d.index}") for d in self._live()]
        if self.scheduler_supervisor is not None:
            out.append((self.scheduler_supervisor, None))
        return out

    def _resolve(self, name: str) -> tuple[Any, str, Device | None]:
        from tritium.plugin_host.errors import PluginLoadError

        with self._lock:
            for d in self.devices:
                if not d.removed and name in (d.admin_name, f"{d.plugin}" if len(self._live()) == 1 else ""):
                    return d.supervisor, d.plugin, d
            sup = self.scheduler_supervisor
            if sup is not None and any(r["name"] == name for r in sup.status()):
                return sup, name, None
        raise PluginLoadError(
            name, "not registered with the supervisor (devices are named <plugin>@<device>)")

    def _live(self) -> list[Device]:
        return [d for d in self.devices if not d.removed]

    def status(self) -> list[dict[str, object]]:
        """Supervisor.status() rows of every plugin process; devices named `<plugin>@<device>`."""
        rows = []
        for sup, suffix in self._supervisors():
            for row in sup.status():
                rows.append({**row, "name": f"{row['name']}{suffix}"} if suffix else row)
        return rows

    def instance(self, name: str, *, wait_s: float | None = None) -> Any:
        """The current instance of plugin `name` (as `status()` names it)."""
        sup, plugin, _ = self._resolve(name)
        return sup.instance(plugin, wait_s=wait_s)

    def add(self, path: str | Path, *, layer: str = "admin") -> AddedPlugin:
        """Hot plug: a backend package becomes a new engine device (model loaded, kernels warm) before
        it gets work; a scheduler package is refused (use replace)."""
        from tritium.plugin_host.errors import PluginLoadError
        from tritium.plugin_host.manifest import load_manifest
        from tritium.plugin_host.supervisor import _package_folder

        manifest = load_manifest(_package_folder(path))
        if manifest.kind != "backend":
            raise PluginLoadError(manifest.name, f"a {manifest.kind} plugin cannot be added while serving; "
                                                 "replace the running one instead")
        if self.engine is None:
            raise PluginLoadError(manifest.name, "the server has no engine to add a device to yet")
        with self._lock:
            index = len(self.devices)
            self._cores.append(self._cores[index % len(self._cores)])
        device = self._start_device(manifest, index, layer)
        with self._lock:
            self.devices.append(device)
        self.engine.add_device(device.client)
        log.info("device %d: backend plugin %s added (pid %d)", index, manifest.name,
                 device.supervisor.get(manifest.name).instance.pid)
        return AddedPlugin(device.admin_name)

    def replace(self, name: str, path: str | Path, *, drain_deadline_s: float = 300.0) -> Any:
        """Hot swap plugin `name` for the package at `path` (same plugin name and kind): new work goes to
        the new process; sequences in flight finish on the old one, which is then stopped."""
        sup, plugin, _ = self._resolve(name)
        return sup.replace(plugin, path, drain_deadline_s=drain_deadline_s)

    def remove(self, name: str, *, drain: bool = True) -> None:
        """Hot unplug a device: the engine moves its requests to the other devices (recompute), then its
        process is stopped. The scheduler and the last device cannot be removed."""
        from tritium.plugin_host.errors import PluginLoadError

        sup, plugin, device = self._resolve(name)
        if device is None:
            raise PluginLoadError(name, "the scheduler cannot be removed while serving; replace it instead")
        if self.engine is not None:
            try:
                moved = self.engine.remove_device(device.index)
            except ValueError as e:
                raise PluginLoadError(name, str(e)) from None
            if not moved:
                raise PluginLoadError(name, "the engine did not release the device in time")
        with self._lock:
            device.removed = True
        device.client.close()
        sup.remove(plugin, drain=drain)
        sup.close()
