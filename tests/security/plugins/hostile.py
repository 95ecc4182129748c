"""Hostile plugins, for the sandbox's end-to-end tests: a scheduler whose first Schedule call (or its
start) attacks the host. Run as `python plugin_main.py <mode> [args...]`.

Every attack that returns writes what happened to $TMPDIR/attack-report.json (the plugin's scratch)
and to stderr, then answers the call like a well-behaved scheduler (so the host sees a working plugin
whose attack merely failed). Modes:
  benign          no attack (the fallback scheduler of the tests)
  tcp_connect     connect to 127.0.0.1:<port> (and ::1) over TCP
  read_secrets    read /etc/passwd, /etc/shadow, the core user's home <home>, another plugin <dir>,
                  the core's environment and memory through /proc
  write_outside   write <file>, into its own package folder, into <home>; and (allowed) into scratch
  fork_bomb       fork until it cannot; also try to spawn /bin/true
  alloc_50g       allocate 50 GB, then grow in 64 MiB steps until refused
  spin_cpu        spin forever inside Schedule
  spin_background spin forever in a thread of its own, from the start (serving meanwhile)
  segfault        dereference NULL inside Schedule
  ptrace_core     PTRACE_ATTACH to the core (its parent)
  signal_core     send signals to the core (0 and SIGCONT: harmless if they got through)
  flood_output    write 64 MiB without a newline to stdout and stderr, keep serving
  big_message     answer Schedule with a 2 GB message (or as big as it can allocate)
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent import futures

MODE = sys.argv[1]
ARGS = sys.argv[2:]
NAME = os.environ.get("TRITIUM_PLUGIN_NAME", "hostile")
report: dict[str, str] = {}


def attempt(label: str, fn) -> None:  # noqa: ANN001
    """Run one attack step; record 'SUCCEEDED: ...' or 'blocked: <error>'."""
    try:
        result = fn()
        report[label] = f"SUCCEEDED: {str(result)[:120]}"
    except BaseException as exc:  # MemoryError included: the attack failed
        report[label] = f"blocked: {type(exc).__name__}: {exc}"[:200]


def save_report() -> None:
    text = json.dumps(report, indent=1)
    sys.stderr.write(f"ATTACK {MODE}: {text}\n")
    sys.stderr.flush()
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "attack-report.json")
    with open(path, "w") as f:
        f.write(text)


def tcp_connect() -> None:
    port = int(ARGS[0])
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):

        def go(family=family, host=host):  # noqa: ANN001, ANN202
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(2)
            s.connect((host, port))
            s.sendall(b"stolen")
            return "connected"

        attempt(f"connect {host}:{port}", go)


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f"{len(f.read())} bytes"


def read_secrets() -> None:
    home, other = ARGS[0], ARGS[1]
    attempt("read /etc/passwd", lambda: _read("/etc/passwd"))
    attempt("read /etc/shadow", lambda: _read("/etc/shadow"))
    attempt(f"list {home}", lambda: os.listdir(home))
    attempt(f"list {other}", lambda: os.listdir(other))
    attempt(f"read {other}/plugin_main.py", lambda: _read(os.path.join(other, "plugin_main.py")))
    attempt("read the core's /proc/<pid>/environ", lambda: _read(f"/proc/{os.getppid()}/environ"))
    attempt("read the core's /proc/<pid>/mem", lambda: _read(f"/proc/{os.getppid()}/mem"))


def _write(path: str) -> str:
    with open(path, "w") as f:
        f.write("pwned\n")
    return path


def write_outside() -> None:
    target, home = ARGS[0], ARGS[1]
    attempt(f"write {target}", lambda: _write(target))
    attempt("write own package", lambda: _write(os.path.join(os.getcwd(), "injected.py")))
    attempt(f"write {home}", lambda: _write(os.path.join(home, ".tritium-pwned")))
    attempt("write scratch (allowed)", lambda: _write(os.path.join(os.environ["TMPDIR"], "ok.txt")))


def fork_bomb() -> None:
    children = []

    def bomb() -> str:
        for _ in range(100000):
            pid = os.fork()
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            children.append(pid)
        return f"{len(children)} processes"

    attempt("fork until refused", bomb)
    report["forked"] = str(len(children))
    attempt("spawn /bin/true", lambda: subprocess.run(["/bin/true"], check=True))
    for pid in children:
        os.kill(pid, signal.SIGKILL)


def alloc_50g() -> None:
    attempt("bytearray(50 GB)", lambda: len(bytearray(50 << 30)))
    held = []

    def grow() -> str:
        while len(held) < 50 * 16:
            held.append(bytearray(64 << 20))
        return f"{len(held) * 64} MiB"

    attempt("grow by 64 MiB", grow)
    report["reached_mib"] = str(len(held) * 64)
    held.clear()


def ptrace_core() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    report["target"] = str(os.getppid())
    save_report()  # the attempt below kills the process if the filter works
    rc = libc.ptrace(16, os.getppid(), None, None)  # PTRACE_ATTACH
    report["ptrace"] = f"SUCCEEDED: rc {rc}" if rc == 0 else f"blocked: {errno.errorcode[ctypes.get_errno()]}"


def signal_core() -> None:
    core = os.getppid()
    attempt(f"kill({core}, 0)", lambda: os.kill(core, 0))
    attempt(f"kill({core}, SIGCONT)", lambda: os.kill(core, signal.SIGCONT))


def flood() -> None:
    chunk = b"A" * (1 << 20)
    for fd in (1, 2):

        def pour(fd=fd):  # noqa: ANN001, ANN202
            for _ in range(64):
                os.write(fd, chunk)

        threading.Thread(target=pour, daemon=True).start()
    report["flood"] = "64 MiB without newline on stdout and stderr"


ATTACKS = {
    "tcp_connect": tcp_connect,
    "read_secrets": read_secrets,
    "write_outside": write_outside,
    "fork_bomb": fork_bomb,
    "alloc_50g": alloc_50g,
    "ptrace_core": ptrace_core,
    "signal_core": signal_core,
    "flood_output": flood,
}


def big_message_server() -> None:
    """A raw gRPC scheduler (the SDK would refuse to send an oversized answer)."""
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from tritium.protos.tritium.plugin.v1 import common_pb2, common_pb2_grpc, scheduler_pb2
    from tritium.sdk import handshake

    class Info(common_pb2_grpc.PluginServicer):
        def Info(self, request, context):  # noqa: N802
            return common_pb2.InfoResponse(
                name=NAME,
                kind=common_pb2.PLUGIN_KIND_SCHEDULER,
                version="0.1.0",
                api_version=handshake.API_VERSION,
                pid=os.getpid(),
            )

    def schedule(request_bytes, context):  # noqa: ANN001, ANN202
        payload = None
        for size in (2 << 30, 64 << 20):
            try:
                payload = b"\x00" * size
                report["payload"] = f"{size} bytes"
                break
            except MemoryError:
                report[f"allocate {size}"] = "blocked: MemoryError"
        save_report()
        head = scheduler_pb2.ScheduleResponse().SerializeToString()
        n, varint = len(payload), b""
        while True:
            b, n = n & 0x7F, n >> 7
            varint += bytes([b | 0x80]) if n else bytes([b])
            if not n:
                break
        return head + b"\x7a" + varint + payload  # field 15, length-delimited: unknown, as big as it gets

    sock = os.path.join(os.environ["TRITIUM_PLUGIN_RUNTIME_DIR"], "big.sock")
    server = grpc.server(futures.ThreadPoolExecutor(2), options=[("grpc.max_send_message_length", -1)])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "tritium.plugin.v1.Scheduler", {"Schedule": grpc.unary_unary_rpc_method_handler(schedule)}
            )
        ]
    )
    common_pb2_grpc.add_PluginServicer_to_server(Info(), server)
    hs = health.HealthServicer()
    hs.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(hs, server)
    if os.path.exists(sock):
        os.unlink(sock)
    server.add_insecure_port(f"unix:{sock}")
    server.start()
    print(handshake.format_handshake(sock), flush=True)
    while True:
        time.sleep(3600)


def main() -> None:
    if MODE == "big_message":
        big_message_server()
    from tritium.protos.tritium.plugin.v1 import scheduler_pb2
    from tritium.sdk import SchedulerPlugin, serve

    if MODE == "spin_background":  # after the imports: a cold start's import time must not eat the CPU limit

        def spin() -> None:
            while True:
                pass

        threading.Thread(target=spin, daemon=True).start()

    class Scheduler(SchedulerPlugin):
        attacked = False

        def Schedule(self, request, context):  # noqa: N802
            if not self.attacked and MODE not in ("benign", "spin_background"):
                self.attacked = True
                if MODE == "spin_cpu":
                    while True:
                        pass
                if MODE == "segfault":
                    ctypes.string_at(0)
                ATTACKS[MODE]()
                save_report()
            batch = [
                scheduler_pb2.Assignment(request_id=q.request_id, device_id=0, tokens=1)
                for q in request.queue
            ]
            return scheduler_pb2.ScheduleResponse(step_id=request.step_id, batch=batch)

    serve(Scheduler(), "scheduler", NAME, "0.1.0")


if __name__ == "__main__":
    main()
