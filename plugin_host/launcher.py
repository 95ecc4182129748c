"""Start one plugin process and bring it to `ready`: exec its entry command (through the sandbox
hook), read and check its handshake line, dial its unix socket, health-check, and compare its Info
with its manifest. Also stop it: ask (Shutdown, drain), then SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import collections
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritium.protos.tritium.plugin.v1 import common_pb2, common_pb2_grpc
from tritium.sdk import fastlane as fastlane_wire
from tritium.sdk import handshake as hs
from tritium.sdk.base import KIND_ENUM, KIND_NAME
from tritium.sdk.serve import MAX_MESSAGE_BYTES
from tritium.sdk.shm import remove_segments_of

from .blocked_calls import BlockedCallWatch
from .errors import PluginHandshakeError, PluginProtocolError, PluginStartError
from .fastlane import HostLane, enabled_by_env
from .manifest import Manifest
from .versioning import check_handshake

log = logging.getLogger("tritium.plugin_host.launcher")

HANDSHAKE_TIMEOUT_S = 10.0
HEALTH_TIMEOUT_S = 5.0
# A sandbox hook (issue 5) turns the plain (argv, env) into the confined one, e.g. by prefixing a
# launcher that applies rlimits, no_new_privs, Landlock and seccomp before exec'ing the plugin.
SandboxHook = Callable[[Manifest, list[str], dict[str, str]], tuple[list[str], dict[str, str]]]


@dataclass
class PluginProcess:
    """A started, health-checked plugin process and its gRPC channel."""

    manifest: Manifest
    process: subprocess.Popen
    handshake: hs.Handshake
    channel: grpc.Channel
    info: common_pb2.InfoResponse
    output: collections.deque = field(default_factory=lambda: collections.deque(maxlen=200))
    started_at: float = field(default_factory=time.monotonic)
    # Shared-memory lane for the hot-path calls, when the plugin took it (None: gRPC only).
    fastlane: HostLane | None = None
    # The core's end of the sandbox's seccomp listener (None: not sandboxed).
    blocked_calls: BlockedCallWatch | None = None

    @property
    def pid(self) -> int:
        """The plugin's process id."""
        return self.process.pid

    def alive(self) -> bool:
        """True while the process has not exited."""
        return self.process.poll() is None

    def output_tail(self, n: int = 20) -> str:
        """The last `n` lines the plugin wrote to stdout/stderr after its handshake."""
        return "\n".join(list(self.output)[-n:])


def _read_handshake_line(name: str, proc: subprocess.Popen, timeout: float) -> str:
    """The first stdout line, read without blocking past `timeout`; errors name the plugin."""
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PluginHandshakeError(
                    name, f"printed no handshake line within {timeout:.1f} s (got {buf[:200]!r} so far)"
                )
            if not sel.select(left):
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                proc.wait(timeout=2)
                err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                raise PluginStartError(
                    name,
                    f"exited with status {proc.returncode} before its handshake "
                    f"(stdout {buf[:200]!r}); stderr: {err.strip() or '(empty)'}",
                )
            buf += chunk
            if len(buf) > hs.MAX_LINE and b"\n" not in buf[: hs.MAX_LINE + 1]:
                raise PluginHandshakeError(
                    name, f"handshake line longer than {hs.MAX_LINE} bytes: {buf[:200]!r}..."
                )
    os.set_blocking(fd, True)
    line, _, rest = buf.partition(b"\n")
    if rest:
        log.info("plugin %s stdout: %s", name, rest.decode(errors="replace").rstrip())
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise PluginHandshakeError(name, f"handshake line is not UTF-8: {line[:200]!r}") from None


def _pump(stream, sink: collections.deque, name: str, label: str) -> None:  # noqa: ANN001
    # Keep reading so a chatty plugin never blocks on a full pipe; keep a tail for error messages.
    # Lines are cut at 64 KiB: a plugin flooding output without newlines must not grow the host.
    for raw in iter(lambda: stream.readline(1 << 16), b""):
        text = raw.decode(errors="replace").rstrip()
        sink.append(f"{label}: {text}")
        log.debug("plugin %s %s: %s", name, label, text)
    stream.close()


def launch(
    manifest: Manifest,
    *,
    sandbox: SandboxHook | None = None,
    env: dict[str, str] | None = None,
    handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
    health_timeout: float = HEALTH_TIMEOUT_S,
    fastlane: bool | None = None,
) -> PluginProcess:
    """Start the plugin of `manifest` and return it ready to call.

    Raises PluginHandshakeError (no/garbage handshake), IncompatiblePluginError (protocol or contract
    version), PluginStartError (exited, failed health check) or PluginProtocolError (Info disagrees with
    the manifest). On any error the process is killed before raising.

    `fastlane` (default: on unless $TRITIUM_FASTLANE=0) passes the plugin a shared-memory lane for its
    hot-path calls (see fastlane.py) and negotiates it; a plugin that declines is served by gRPC only.
    """
    argv = manifest.command()
    penv = dict(os.environ if env is None else env)
    penv.update(
        {
            hs.COOKIE_KEY: hs.COOKIE_VALUE,
            "TRITIUM_PLUGIN_CORE_PROTOCOLS": ",".join(map(str, hs.SUPPORTED_CORE_PROTOCOLS)),
            "TRITIUM_PLUGIN_NAME": manifest.name,
            "TRITIUM_PLUGIN_KIND": manifest.kind,
            "TRITIUM_PLUGIN_WATCH_STDIN": "1",
        }
    )
    lane = HostLane() if (enabled_by_env() if fastlane is None else fastlane) else None
    if lane is not None:
        penv[fastlane_wire.ENV] = lane.env_value()
    watch = None
    if sandbox is not None:
        # Before the hook: the hook filters the environment it passes on (TRITIUM_* stays).
        watch = BlockedCallWatch(manifest.name)
        penv.update(watch.env())
        argv, penv = sandbox(manifest, argv, penv)
    fds = (*(lane.child_fds() if lane is not None else ()), *((watch.child_fd(),) if watch else ()))
    try:
        proc = subprocess.Popen(
            argv,
            cwd=manifest.root,
            env=penv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Its own process group, so a terminal's Ctrl-C reaches the host only (the host stops its
            # plugins), but the host's session: a new session would be a separate scheduler autogroup
            # and get a CPU share of its own, unlike the same kernels run in-process.
            process_group=0,
            close_fds=True,
            pass_fds=fds,
        )
    except OSError as exc:
        if lane is not None:
            lane.close()
        if watch is not None:
            watch.close()
        raise PluginStartError(manifest.name, f"cannot execute entry {argv}: {exc}") from None
    if lane is not None:
        lane.after_spawn()
    if watch is not None:
        watch.after_spawn()
    channel = None
    handshake = None
    try:
        line = _read_handshake_line(manifest.name, proc, handshake_timeout)
        try:
            handshake = hs.parse_handshake(line)
        except hs.HandshakeFormatError as exc:
            raise PluginHandshakeError(
                manifest.name, f"garbage handshake line {line[:300]!r}: {exc}"
            ) from None
        check_handshake(manifest, handshake)
        output: collections.deque = collections.deque(maxlen=200)
        for stream, label in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
            threading.Thread(
                target=_pump,
                args=(stream, output, manifest.name, label),
                daemon=True,
                name=f"pump-{manifest.name}-{label}",
            ).start()
        channel = grpc.insecure_channel(
            handshake.target(),
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        try:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=health_timeout, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            raise PluginStartError(
                manifest.name,
                f"health check at {handshake.address} failed: {exc.code().name} {exc.details()}",
            ) from None
        if health.status != health_pb2.HealthCheckResponse.SERVING:
            raise PluginStartError(
                manifest.name,
                f"health check says {health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)}",
            )
        try:
            info = common_pb2_grpc.PluginStub(channel).Info(common_pb2.InfoRequest(), timeout=health_timeout)
        except grpc.RpcError as exc:
            raise PluginStartError(manifest.name, f"Info failed: {exc.code().name} {exc.details()}") from None
        mismatches = []
        if info.name != manifest.name:
            mismatches.append(f"name {info.name!r} (manifest {manifest.name!r})")
        if info.kind != KIND_ENUM[manifest.kind]:
            mismatches.append(f"kind {KIND_NAME.get(info.kind, info.kind)!r} (manifest {manifest.kind!r})")
        if info.version != manifest.version:
            mismatches.append(f"version {info.version!r} (manifest {manifest.version!r})")
        if info.api_version != manifest.api:
            mismatches.append(f"api {info.api_version!r} (manifest {manifest.api!r})")
        if mismatches:
            raise PluginProtocolError(
                manifest.name, "Info disagrees with the manifest: " + ", ".join(mismatches)
            )
        if watch is not None:
            watch.ready = True  # from now on a blocked call is the plugin's doing, not its start
        if lane is not None and not lane.negotiate(channel, health_timeout):
            lane = None
    except BaseException:
        if lane is not None:
            lane.close()
        if channel is not None:
            channel.close()
        _kill(proc, handshake.address if handshake is not None else "")
        if watch is not None:
            watch.close()
        raise
    log.info(
        "plugin %s %s ready: pid %d, socket %s", manifest.name, manifest.version, proc.pid, handshake.address
    )
    return PluginProcess(manifest, proc, handshake, channel, info, output, fastlane=lane, blocked_calls=watch)


def _kill(proc: subprocess.Popen, socket_path: str = "") -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    remove_leftovers(proc.pid, socket_path)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


def remove_leftovers(pid: int, socket_path: str = "") -> None:
    """Remove what a dead plugin could not: its shared-memory segments and its socket (plus the socket's
    folder if that is then empty — never more, since the path came from the plugin)."""
    remove_segments_of(pid)
    if socket_path:
        try:
            os.unlink(socket_path)
            os.rmdir(os.path.dirname(socket_path))
        except OSError:
            pass


def stop(plugin: PluginProcess, *, drain: bool = True, deadline_s: float = 5.0) -> int:
    """Stop a plugin: Shutdown(drain) and wait, then SIGTERM, then SIGKILL (ask first, then force).
    Removes the shared-memory segments it created. Returns its exit status."""
    proc = plugin.process
    if proc.poll() is None:
        asked = True
        try:
            common_pb2_grpc.PluginStub(plugin.channel).Shutdown(
                common_pb2.ShutdownRequest(drain=drain, deadline_ms=int(deadline_s * 1000)), timeout=1.0
            )
        except grpc.RpcError as exc:
            log.warning(
                "plugin %s: Shutdown failed (%s); sending SIGTERM", plugin.manifest.name, exc.code().name
            )
            asked = False
        try:
            proc.wait(timeout=deadline_s + 1.0 if asked else 0.01)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                pass
    plugin.channel.close()
    if plugin.fastlane is not None:
        plugin.fastlane.close()
    _kill(proc, plugin.handshake.address)
    if plugin.blocked_calls is not None:
        plugin.blocked_calls.close()
    return proc.returncode
