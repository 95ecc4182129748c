"""Supervise plugin processes: lifecycle states, crash detection, restart with backoff, a circuit
breaker, fallback plugins, hot plug, and calls that survive a plugin's death.

Lifecycle of a plugin:

    discovered ──verify──▶ verified ──launch──▶ starting ──handshake+health──▶ ready
        ready ──drain (remove/replace/stop)──▶ draining ──▶ stopped
        any ──(refused, or too many crashes in the window)──▶ failed

A watcher thread per process blocks in wait() on it, so a death (SIGKILL, segfault, exit) is seen at
once; the supervisor then restarts the plugin after a backoff, unless it crashed `max_crashes` times
within `window_s` (circuit open: state failed, calls go to the fallback plugin if one is configured).

`call(name, fn)` runs `fn(instance)` against the current instance; if the instance dies during the
call (or hangs past the call's deadline, and is then killed), it waits for the restarted (or fallback)
instance and runs `fn` again. `fn` gets the instance so it can rebuild per-instance state (a backend
client reloads its model and replays its sequences when `instance.key` changed).

Seams for issue 5: `verify(manifest)` runs before every launch (signature check) and may return the
manifest of a verified private copy, which is then what is launched (signature.SignatureVerifier);
`sandbox` wraps the entry command (see launcher.SandboxHook, sandbox.hook.Sandbox).
"""

from __future__ import annotations

import collections
import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from . import security_events
from .archive import is_archive, unpack
from .discovery import Discovery
from .errors import (
    PluginCallError,
    PluginError,
    PluginLoadError,
    PluginProtocolError,
    PluginStartError,
    PluginUnavailableError,
)
from .launcher import PluginProcess, SandboxHook, launch, remove_leftovers, stop
from .manifest import Manifest, load_manifest, verify_files
from .versioning import check_manifest

log = logging.getLogger("tritium.plugin_host.supervisor")
T = TypeVar("T")


class PluginState(enum.StrEnum):
    """Lifecycle state of a supervised plugin."""

    DISCOVERED = "discovered"
    VERIFIED = "verified"
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class RestartPolicy:
    """How the supervisor reacts to crashes."""

    # Circuit breaker: this many crashes within window_s opens the circuit (state failed).
    max_crashes: int = 5
    window_s: float = 60.0
    # Delay before restart k (k = crashes in the window, from 1): min(initial * 2**(k-1), max).
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 2.0
    # Most times one call is attempted across restarts/fallback before giving up.
    call_attempts: int = 4
    # How long a call waits for a (re)starting plugin to become ready.
    ready_wait_s: float = 30.0
    # Idle ready plugins are health-checked this often (0 disables); one that does not answer within
    # health_timeout_s is hung (e.g. stopped, deadlocked) and is killed and restarted.
    health_interval_s: float = 5.0
    health_timeout_s: float = 2.0


@dataclass(eq=False)  # identity semantics: one object per process
class Instance:
    """One running process of a plugin, as callers see it. `key` changes with every (re)start."""

    name: str
    generation: int
    process: PluginProcess
    inflight: int = 0
    # Set once the process is known dead or condemned (killed by fault()); calls wait for the next one.
    dead: bool = False
    fault_reason: str = ""
    # Set when a hot replace made another process current: no new work, only what it already holds.
    retired: bool = False
    # Work pinned to this process beyond single calls (a backend's sequences); draining waits for 0.
    leases: int = 0
    _stubs: dict[type, object] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Identity of this process among all instances of all plugins (`name#generation`)."""
        return f"{self.name}#{self.generation}"

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    @property
    def channel(self) -> grpc.Channel:
        """The gRPC channel to the process."""
        return self.process.channel

    def stub(self, stub_cls: type) -> object:
        """A cached stub of `stub_cls` on this instance's channel."""
        s = self._stubs.get(stub_cls)
        if s is None:
            s = self._stubs[stub_cls] = stub_cls(self.process.channel)
        return s


@dataclass
class ManagedPlugin:
    """Bookkeeping of one plugin name."""

    manifest: Manifest
    layer: str
    state: PluginState = PluginState.DISCOVERED
    instance: Instance | None = None
    restarts: int = 0
    generation: int = 0
    crashes: collections.deque = field(default_factory=collections.deque)
    error: str = ""
    fallback: str = ""
    last_crash_detected_at: float = 0.0
    last_exit: str = ""

    @property
    def name(self) -> str:
        """The plugin's name."""
        return self.manifest.name


class Supervisor:
    """Owns every plugin process of the core. Thread-safe."""

    def __init__(
        self,
        *,
        verify: Callable[[Manifest], Manifest | None] | None = None,
        sandbox: SandboxHook | None = None,
        policy: RestartPolicy | None = None,
        launch_options: dict | None = None,
    ) -> None:
        self._verify_hook = verify
        self._sandbox = sandbox
        self.policy = policy or RestartPolicy()
        self._launch_options = launch_options or {}
        self._plugins: dict[str, ManagedPlugin] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._closed = False
        self._monitor: threading.Thread | None = None
        self._retired: set[Instance] = set()  # replaced instances still draining

    # ---- registration -------------------------------------------------------------------------
    def register(self, manifest: Manifest, layer: str = "admin", *, fallback: str = "") -> ManagedPlugin:
        """Add a plugin in state discovered (not started). Replaces a stopped/failed entry of that name."""
        with self._lock:
            old = self._plugins.get(manifest.name)
            if old is not None and old.state not in (
                PluginState.STOPPED,
                PluginState.FAILED,
                PluginState.DISCOVERED,
            ):
                raise PluginLoadError(manifest.name, f"already registered and {old.state}; use replace()")
            mp = ManagedPlugin(manifest, layer, fallback=fallback or manifest.fallback)
            self._plugins[manifest.name] = mp
            return mp

    def register_discovered(self, discovery: Discovery) -> None:
        """Register every plugin discovery found; a manifest that failed to load is registered as failed."""
        for d in discovery.plugins.values():
            if d.manifest is None:
                continue
            self.register(d.manifest, d.layer)

    def get(self, name: str) -> ManagedPlugin:
        """The bookkeeping of plugin `name`; PluginLoadError if unknown."""
        with self._lock:
            mp = self._plugins.get(name)
        if mp is None:
            raise PluginLoadError(name, "not registered with the supervisor")
        return mp

    def set_fallback(self, name: str, fallback: str) -> None:
        """Route calls for `name` to `fallback` while `name`'s circuit is open."""
        self.get(name).fallback = fallback

    # ---- start / stop -------------------------------------------------------------------------
    def _set_state(self, mp: ManagedPlugin, state: PluginState, error: str = "") -> None:
        with self._lock:
            log.info("plugin %s: %s -> %s%s", mp.name, mp.state, state, f" ({error})" if error else "")
            mp.state = state
            if error:
                mp.error = error
            self._changed.notify_all()

    def _verify(self, mp: ManagedPlugin) -> Manifest:
        """Check the manifest and files, then run the verify hook; returns the manifest to launch: the
        one the hook returned (a verified private copy) or the plugin's own."""
        check_manifest(mp.manifest)
        to_launch = mp.manifest
        if self._verify_hook is not None:
            # First: a signature check covers the files too, and its error says more (SignatureError).
            verified = self._verify_hook(mp.manifest)
            if isinstance(verified, Manifest):
                to_launch = verified
        verify_files(to_launch)
        return to_launch

    def _launch(self, mp: ManagedPlugin, *, restart: bool = False) -> Instance:
        to_launch = self._verify(mp)
        if mp.state == PluginState.DISCOVERED:
            self._set_state(mp, PluginState.VERIFIED)
        if mp.state != PluginState.STARTING:
            self._set_state(mp, PluginState.STARTING)
        proc = launch(to_launch, sandbox=self._sandbox, **self._launch_options)
        with self._lock:
            mp.generation += 1
            inst = Instance(mp.name, mp.generation, proc)
            mp.instance = inst
            mp.state = PluginState.READY
            mp.error = ""
            if restart:
                mp.restarts += 1
            self._changed.notify_all()
        threading.Thread(target=self._watch, args=(mp, inst), daemon=True, name=f"watch-{inst.key}").start()
        self._ensure_monitor()
        return inst

    def _ensure_monitor(self) -> None:
        with self._lock:
            if self._monitor is None and self.policy.health_interval_s > 0:
                self._monitor = threading.Thread(target=self._probe_loop, daemon=True, name="health-probe")
                self._monitor.start()

    def _probe_loop(self) -> None:
        # Deaths are seen by the watchers at once; this finds processes that are alive but stuck.
        while not self._closed:
            time.sleep(self.policy.health_interval_s)
            with self._lock:
                idle = [
                    mp.instance
                    for mp in self._plugins.values()
                    if mp.state == PluginState.READY
                    and mp.instance is not None
                    and not mp.instance.dead
                    and mp.instance.inflight == 0
                ]
            for inst in idle:
                try:
                    health_pb2_grpc.HealthStub(inst.channel).Check(
                        health_pb2.HealthCheckRequest(service=""), timeout=self.policy.health_timeout_s
                    )
                except grpc.RpcError as exc:
                    if not inst.dead and not self._closed and inst.process.alive():
                        self.fault(inst, f"health check failed: {exc.code().name}")
                except ValueError:
                    pass  # the channel was closed by a concurrent stop

    def start(self, name: str) -> Instance:
        """Verify and launch plugin `name`; return its ready instance. A failure leaves it failed and
        raises the error that names the plugin and why."""
        mp = self.get(name)
        with self._lock:
            if mp.state == PluginState.READY and mp.instance is not None:
                return mp.instance
            mp.crashes.clear()
        try:
            return self._launch(mp)
        except PluginError as exc:
            self._set_state(mp, PluginState.FAILED, exc.reason)
            raise

    def stop(self, name: str, *, drain: bool = True, deadline_s: float = 5.0) -> None:
        """Drain and stop plugin `name` (no restart)."""
        mp = self.get(name)
        with self._lock:
            inst = mp.instance
            mp.instance = None
            if inst is None:
                if mp.state != PluginState.FAILED:
                    mp.state = PluginState.STOPPED
                return
            mp.state = PluginState.DRAINING
            self._changed.notify_all()
        self._drain_and_stop(inst, drain=drain, deadline_s=deadline_s)
        self._set_state(mp, PluginState.STOPPED)

    def _drain_and_stop(self, inst: Instance, *, drain: bool, deadline_s: float) -> None:
        try:
            self._drain_then_stop(inst, drain=drain, deadline_s=deadline_s)
        finally:
            with self._lock:
                self._retired.discard(inst)

    def _drain_then_stop(self, inst: Instance, *, drain: bool, deadline_s: float) -> None:
        end = time.monotonic() + deadline_s
        with self._lock:
            while drain and (inst.inflight > 0 or inst.leases > 0) and not inst.dead:
                left = end - time.monotonic()
                if left <= 0:
                    log.warning(
                        "plugin %s (pid %d): drain deadline passed with %d calls and %d leases",
                        inst.name,
                        inst.pid,
                        inst.inflight,
                        inst.leases,
                    )
                    break
                self._changed.wait(min(left, 0.05))
        stop(inst.process, drain=drain, deadline_s=max(end - time.monotonic(), 0.5))

    def close(self) -> None:
        """Stop every plugin, and every replaced instance still draining."""
        self._closed = True
        with self._lock:
            retired = list(self._retired)
        for inst in retired:
            stop(inst.process, drain=False, deadline_s=1.0)
        for name in list(self._plugins):
            try:
                self.stop(name, drain=False, deadline_s=1.0)
            except PluginError:
                pass

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- crash handling -----------------------------------------------------------------------
    def _watch(self, mp: ManagedPlugin, inst: Instance) -> None:
        proc = inst.process.process
        status = proc.wait()
        detected = time.monotonic()
        inst.dead = True
        remove_leftovers(inst.pid, inst.process.handshake.address)
        lane = getattr(inst.process, "fastlane", None)
        if lane is not None:
            lane.peer_gone = True
            lane.close(wait_s=1.0)  # a call in flight sees EOF (or peer_gone) and closes it itself
        with self._lock:
            if mp.instance is not inst or self._closed:
                return  # a deliberate stop or replace, not a crash
            mp.instance = None
            mp.last_crash_detected_at = detected
            how = f"killed by signal {-status}" if status < 0 else f"exited with status {status}"
            mp.last_exit = how
        log.error(
            "plugin %s (pid %d) %s; last output:\n%s", mp.name, inst.pid, how, inst.process.output_tail()
        )
        security_events.record_exit(mp.name, status, inst.fault_reason)
        why = f"process {inst.pid} {how}"
        self._on_crash(mp, f"{inst.fault_reason}; {why}" if inst.fault_reason else why)

    def _on_crash(self, mp: ManagedPlugin, why: str) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                mp.crashes.append(now)
                while mp.crashes and now - mp.crashes[0] > self.policy.window_s:
                    mp.crashes.popleft()
                if len(mp.crashes) >= self.policy.max_crashes:
                    msg = (
                        f"{len(mp.crashes)} crashes within {self.policy.window_s:.0f} s (last: {why}); "
                        f"circuit open, not restarting"
                    )
                    log.error("plugin %s: %s", mp.name, msg)
                    mp.state = PluginState.FAILED
                    mp.error = msg
                    self._changed.notify_all()
                    return
                delay = min(
                    self.policy.backoff_initial_s * 2 ** (len(mp.crashes) - 1), self.policy.backoff_max_s
                )
                mp.state = PluginState.STARTING
                mp.error = why
                self._changed.notify_all()
            time.sleep(delay)
            if self._closed or mp.state != PluginState.STARTING:
                return
            try:
                self._launch(mp, restart=True)
                log.warning("plugin %s restarted after %s (restart %d)", mp.name, why, mp.restarts)
                return
            except PluginError as exc:
                why = exc.reason
                log.error("plugin %s failed to restart: %s", mp.name, exc.reason)

    def pin(self, inst: Instance) -> None:
        """Take a lease on `inst`: while leases are held, a replace or drain keeps it running."""
        with self._lock:
            inst.leases += 1

    def unpin(self, inst: Instance) -> None:
        """Return a lease taken with pin()."""
        with self._lock:
            inst.leases = max(inst.leases - 1, 0)
            self._changed.notify_all()

    def fault(self, inst: Instance, why: str) -> None:
        """Declare an instance broken (hung, or answering against the contract): kill it so that the
        watcher restarts the plugin. Safe to call for an instance that is already gone."""
        log.error("plugin %s (pid %d) is faulty: %s; killing it", inst.name, inst.pid, why)
        inst.fault_reason = inst.fault_reason or why
        inst.dead = True
        inst.process.process.kill()

    # ---- routing and calls --------------------------------------------------------------------
    def instance(self, name: str, *, wait_s: float | None = None) -> Instance:
        """The instance calls for `name` go to now: its own when ready, its fallback's while its circuit
        is open. Waits up to wait_s for a (re)starting plugin; PluginUnavailableError otherwise."""
        wait_s = self.policy.ready_wait_s if wait_s is None else wait_s
        end = time.monotonic() + wait_s
        mp = self.get(name)
        with self._lock:
            while True:
                if mp.state == PluginState.READY and mp.instance is not None and not mp.instance.dead:
                    return mp.instance
                if mp.state in (
                    PluginState.FAILED,
                    PluginState.STOPPED,
                    PluginState.DISCOVERED,
                    PluginState.VERIFIED,
                ):
                    if mp.fallback and mp.fallback != name:
                        fb = self.get(mp.fallback)
                        if fb.state in (PluginState.DISCOVERED, PluginState.STOPPED):
                            break  # start the fallback outside the lock
                        return self.instance(mp.fallback, wait_s=max(end - time.monotonic(), 0.0))
                    raise PluginUnavailableError(
                        name, f"is {mp.state}" + (f": {mp.error}" if mp.error else "")
                    )
                left = end - time.monotonic()
                if left <= 0:
                    raise PluginUnavailableError(
                        name, f"still {mp.state} after waiting {wait_s:.1f} s ({mp.error})"
                    )
                self._changed.wait(left)
        log.warning("plugin %s unavailable (%s); starting fallback %s", name, mp.error, mp.fallback)
        try:
            self.start(mp.fallback)
        except PluginError:
            pass
        return self.instance(mp.fallback, wait_s=max(end - time.monotonic(), 0.0))

    def call(self, name: str, fn: Callable[[Instance], T], *, method: str = "call") -> T:
        """Run `fn(instance)` on plugin `name`, surviving the instance's death: on UNAVAILABLE /
        CANCELLED with the process gone, or DEADLINE_EXCEEDED (the hung process is killed), the call is
        repeated on the restarted or fallback instance, at most policy.call_attempts times.

        Other gRPC errors raise PluginCallError; a reply against the contract (malformed or oversized
        message, or fn raising PluginProtocolError) kills the instance and raises PluginProtocolError.
        """
        last: str = ""
        for attempt in range(1, self.policy.call_attempts + 1):
            inst = self.instance(name)
            with self._lock:
                inst.inflight += 1
            try:
                return fn(inst)
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details() or ""
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    self.fault(inst, f"{method} did not answer within its deadline")
                    last = f"{method} hung past its deadline"
                elif code in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.CANCELLED,
                    grpc.StatusCode.UNKNOWN,
                ) and self._died(inst):
                    last = f"process {inst.pid} died during {method}"
                elif code == grpc.StatusCode.UNAVAILABLE:
                    last = f"{method}: UNAVAILABLE {details}"
                    time.sleep(0.05)
                elif code == grpc.StatusCode.RESOURCE_EXHAUSTED and "message" in details.lower():
                    self.fault(inst, f"{method} answer is larger than the message limit: {details}")
                    raise PluginProtocolError(
                        inst.name, f"{method} answered with an oversized message: {details}"
                    ) from None
                elif code == grpc.StatusCode.INTERNAL and "deserializ" in details.lower():
                    self.fault(inst, f"{method} answer is not a valid protobuf message")
                    raise PluginProtocolError(
                        inst.name, f"{method} answered with a malformed message: {details}"
                    ) from None
                else:
                    raise PluginCallError(inst.name, f"{method} failed: {code.name}: {details}") from None
                log.warning(
                    "plugin %s: %s (attempt %d/%d); retrying on the next instance",
                    name,
                    last,
                    attempt,
                    self.policy.call_attempts,
                )
            except PluginProtocolError as exc:
                self.fault(inst, exc.reason)
                raise
            finally:
                with self._lock:
                    inst.inflight -= 1
                    self._changed.notify_all()
        raise PluginUnavailableError(name, f"{method} failed {self.policy.call_attempts} times; last: {last}")

    def _died(self, inst: Instance, wait_s: float = 1.0) -> bool:
        # The socket closes a moment before the kernel reports the exit; give it up to wait_s.
        end = time.monotonic() + wait_s
        while time.monotonic() < end:
            if inst.dead or inst.process.process.poll() is not None:
                inst.dead = True
                return True
            time.sleep(0.005)
        return False

    # ---- hot plug -----------------------------------------------------------------------------
    def add(self, path: Path | str, *, layer: str = "admin") -> Instance:
        """Hot-plug the package at `path` (folder with plugin.toml) and start it."""
        manifest = load_manifest(_package_folder(path))
        self.register(manifest, layer)
        return self.start(manifest.name)

    def replace(self, name: str, path: Path | str, *, drain_deadline_s: float = 300.0) -> Instance:
        """Start the package at `path` in place of plugin `name`: new calls go to the new process at once;
        calls in flight and work pinned to the old one (its leases: a backend's running sequences)
        finish there; then it is stopped, in the background (after drain_deadline_s at the latest)."""
        manifest = load_manifest(_package_folder(path))
        mp = self.get(name)
        if manifest.name != name or manifest.kind != mp.manifest.kind:
            raise PluginLoadError(
                name, f"cannot be replaced by {manifest.kind} plugin {manifest.name!r} ({manifest.path})"
            )
        new = ManagedPlugin(manifest, "admin", fallback=mp.fallback)
        new.generation = mp.generation
        proc = launch(self._verify(new), sandbox=self._sandbox, **self._launch_options)
        with self._lock:
            old = mp.instance
            if old is not None:
                old.retired = True
            mp.manifest = manifest
            mp.layer = "admin"
            mp.generation += 1
            inst = Instance(name, mp.generation, proc)
            mp.instance = inst
            mp.state = PluginState.READY
            mp.error = ""
            mp.crashes.clear()
            self._changed.notify_all()
        threading.Thread(target=self._watch, args=(mp, inst), daemon=True, name=f"watch-{inst.key}").start()
        self._ensure_monitor()
        if old is not None:
            self._retired.add(old)
            threading.Thread(
                target=self._drain_and_stop,
                args=(old,),
                kwargs={"drain": True, "deadline_s": drain_deadline_s},
                daemon=True,
                name=f"drain-{old.key}",
            ).start()
        log.info(
            "plugin %s replaced by %s (%s); old instance %s draining",
            name,
            manifest.version,
            manifest.path,
            old.key if old else "-",
        )
        return inst

    def remove(self, name: str, *, drain: bool = True) -> None:
        """Hot-unplug plugin `name`: drain, stop, forget."""
        self.stop(name, drain=drain)
        with self._lock:
            self._plugins.pop(name, None)

    # ---- reporting ----------------------------------------------------------------------------
    def status(self) -> list[dict[str, object]]:
        """One row per plugin: name, kind, version, layer, state, pid, restarts, manifest path, error."""
        with self._lock:
            return [
                {
                    "name": mp.name,
                    "kind": mp.manifest.kind,
                    "version": mp.manifest.version,
                    "layer": mp.layer,
                    "state": str(mp.state),
                    "pid": mp.instance.pid if mp.instance else 0,
                    "restarts": mp.restarts,
                    "manifest_path": str(mp.manifest.path),
                    "error": mp.error,
                }
                for mp in self._plugins.values()
            ]

    def wait_for(self, name: str, predicate: Callable[[ManagedPlugin], bool], timeout: float) -> bool:
        """Block until predicate(plugin) holds or timeout passes; returns whether it holds."""
        mp = self.get(name)
        end = time.monotonic() + timeout
        with self._lock:
            while not predicate(mp):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True


def _package_folder(path: Path | str) -> Path:
    """A package folder, unpacking an archive first."""
    p = Path(path)
    return unpack(p) if is_archive(p) else p


__all__ = ["Instance", "ManagedPlugin", "PluginStartError", "PluginState", "RestartPolicy", "Supervisor"]
