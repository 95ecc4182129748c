"""Hostile plugins end to end: each attack fails or its plugin is stopped, the reason is logged and
counted in the metrics, the core keeps serving, and every request it accepted is answered (by the
plugin, or by the fallback scheduler once the hostile one is refused or its circuit opens).

All packages are signed at test time with a throwaway key; the plugins run under the full sandbox
(rlimits, user + network namespaces, no_new_privs, Landlock, seccomp). The module writes the table of
attacks and outcomes to tests/security/ATTACKS.md and into the top-level README.md (between markers).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from security_packages import HOSTILE, make_signed_package
from tritium.plugin_host import security_events
from tritium.plugin_host.errors import PluginError, PluginProtocolError, SignatureError
from tritium.plugin_host.sandbox.hook import Sandbox, SandboxConfig
from tritium.plugin_host.sandbox.rlimits import Limits
from tritium.plugin_host.security_events import SecurityMetricsCollector
from tritium.plugin_host.signature import SignatureVerifier
from tritium.plugin_host.supervisor import PluginState, RestartPolicy, Supervisor
from tritium.protos.tritium.plugin.v1 import scheduler_pb2, scheduler_pb2_grpc

MiB = 1 << 20
MEMORY_LIMIT = 512 * MiB
CALL_TIMEOUT_S = 2.0
TABLE = Path(__file__).resolve().parent / "ATTACKS.md"
ROWS: dict[str, dict[str, str]] = {}
EXPECTED_ROWS = 15
CPU_LIMIT_S = 2


class Core:
    """The core's side of the test: a supervisor with signature verification and the sandbox, a benign
    fallback scheduler, and a request path that never drops a request it accepted."""

    def __init__(self, root: Path, keys) -> None:  # noqa: ANN001
        self.root = root
        self.keys = keys
        self.store = keys.store("e2e")
        self.sandbox = Sandbox(
            SandboxConfig(
                scratch_root=root / "scratch",
                limits=Limits(memory_bytes=MEMORY_LIMIT, cpu_seconds=30, processes=256, file_bytes=256 * MiB),
                plugin_limits={"spin_background": Limits(memory_bytes=MEMORY_LIMIT, cpu_seconds=CPU_LIMIT_S)},
            )
        )
        self.verifier = SignatureVerifier(trust=self.store, copy_root=root / "verified", allow_unsigned=False)
        self.sup = Supervisor(
            verify=self.verifier,
            sandbox=self.sandbox,
            policy=RestartPolicy(
                max_crashes=2, window_s=120, backoff_initial_s=0.01, call_attempts=6, ready_wait_s=30,
                health_interval_s=0,
            ),
        )  # fmt: skip
        self.step = 0
        self.answered: list[tuple[int, str]] = []
        self.add("benign", [], fallback="")
        self.sup.start("benign")

    def add(self, name: str, args: list[str], *, key="trusted", fallback: str = "benign"):  # noqa: ANN001
        signer = {"trusted": self.keys.private, "other": self.keys.other, None: None}[key]
        m = make_signed_package(
            self.root / "packages" / name, HOSTILE, [name.split("-")[0], *args], signer, name=name
        )
        self.sup.register(m, "test", fallback=fallback)
        return m

    def request(self) -> str:
        """Send one Schedule request (one queued request) and return the name of the plugin that
        answered; fails the test if the request is not answered."""
        self.step += 1
        step = self.step
        req = scheduler_pb2.ScheduleRequest(
            step_id=step, queue=[scheduler_pb2.QueuedRequest(request_id=1000 + step)]
        )
        who = []

        def call(inst):  # noqa: ANN001, ANN202
            who.append(inst.name)
            return inst.stub(scheduler_pb2_grpc.SchedulerStub).Schedule(req, timeout=CALL_TIMEOUT_S)

        return self._finish(step, call, who)

    def _finish(self, step: int, call, who: list[str]) -> str:  # noqa: ANN001
        name = self.current
        try:
            resp = self.sup.call(name, call, method="Schedule")
        except (PluginProtocolError, PluginError):
            # The plugin answered against the contract (or is refused): the core reroutes the request.
            resp = self.sup.call("benign", call, method="Schedule")
        assert resp.step_id == step and [a.request_id for a in resp.batch] == [1000 + step]
        self.answered.append((step, who[-1]))
        return who[-1]

    current = "benign"

    def serve(self, name: str) -> tuple[str, str]:
        """Two requests routed to `name`: the one that meets the attack, and the next one."""
        self.current = name
        first = self.request()
        second = self.request()
        self.current = "benign"
        return first, second

    def scratch_report(self, name: str) -> dict[str, str]:
        path = self.root / "scratch" / name / "tmp" / "attack-report.json"
        for _ in range(50):
            if path.is_file():
                return json.loads(path.read_text())
            time.sleep(0.1)
        return {}


@pytest.fixture(scope="module")
def core(keys):
    # Not under pytest's 0700 basetemp: a sandboxed plugin reaches its files through these folders.
    root = Path(tempfile.mkdtemp(prefix="tritium-security-"))
    os.chmod(root, 0o755)
    security_events.reset()
    c = Core(root, keys)
    yield c
    c.sup.close()
    shutil.rmtree(root, ignore_errors=True)
    if len(ROWS) == EXPECTED_ROWS:
        _write_table()


def _counted(plugin: str, event: str, reason: str) -> int:
    registry = CollectorRegistry()
    registry.register(SecurityMetricsCollector())
    text = generate_latest(registry).decode()
    needle = f'tritium_plugin_security_events_total{{event="{event}",plugin="{plugin}",reason="{reason}"}}'
    line = next((ln for ln in text.splitlines() if ln.startswith(needle)), None)
    return int(float(line.split()[-1])) if line else 0


def _row(attack: str, outcome: str, host: str, answered: tuple[str, str]) -> None:
    ROWS[attack] = {"attack": attack, "outcome": outcome, "host": host, "answered": " / ".join(answered)}


def _blocked(report: dict[str, str], *keys: str) -> None:
    for k in keys:
        assert report.get(k, "").startswith("blocked"), (k, report)


def _seen_by_host(caplog, plugin: str, syscall: str, call: str, times: int) -> None:  # noqa: ANN001
    """The core saw the blocked call: counted with the plugin's name, and logged with its arguments."""
    assert _counted(plugin, "blocked", syscall) >= times, security_events.counts()
    logged = [r.getMessage() for r in caplog.records if r.name == "tritium.plugin_host.security"]
    assert any(f"plugin {plugin} blocked ({syscall}): {call}" in m for m in logged), logged


def test_tcp_connect(core, caplog):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    core.add("tcp_connect", [str(port)])
    core.sup.start("tcp_connect")
    answered = core.serve("tcp_connect")
    report = core.scratch_report("tcp_connect")
    _blocked(report, f"connect 127.0.0.1:{port}", f"connect ::1:{port}")
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing ever connected
    listener.close()
    assert answered == ("tcp_connect", "tcp_connect")
    _seen_by_host(caplog, "tcp_connect", "socket", "socket(AF_INET, SOCK_STREAM, 0)", 2)
    _seen_by_host(caplog, "tcp_connect", "socket", "socket(AF_INET6, SOCK_STREAM, 0)", 2)
    _row(
        "connect to 127.0.0.1 over TCP",
        "fails: " + report[f"connect 127.0.0.1:{port}"][9:90],
        "plugin keeps serving; `blocked`/`socket` counted and logged (seccomp: AF_UNIX only, others "
        "to the core's listener; own netns; Landlock TCP)",
        answered,
    )


def test_read_secrets(core):
    other = str(core.sup.get("benign").instance.process.manifest.root)
    core.add("read_secrets", [str(Path.home()), other])
    core.sup.start("read_secrets")
    answered = core.serve("read_secrets")
    report = core.scratch_report("read_secrets")
    _blocked(
        report,
        "read /etc/passwd",
        "read /etc/shadow",
        f"list {Path.home()}",
        f"list {other}",
        f"read {other}/plugin_main.py",
        "read the core's /proc/<pid>/environ",
        "read the core's /proc/<pid>/mem",
    )
    assert answered == ("read_secrets", "read_secrets")
    _row(
        "read /etc/passwd, /etc/shadow, the home dir, another plugin, the core's /proc environ and mem",
        "fails: " + report["read /etc/passwd"][9:90],
        "plugin keeps serving (Landlock)",
        answered,
    )


def test_write_outside(core):
    target_dir = Path(tempfile.mkdtemp(prefix="tritium-outside-"))
    os.chmod(target_dir, 0o777)
    target = target_dir / "pwned.txt"
    m = core.add("write_outside", [str(target), str(Path.home())])
    core.sup.start("write_outside")
    answered = core.serve("write_outside")
    report = core.scratch_report("write_outside")
    _blocked(report, f"write {target}", "write own package", f"write {Path.home()}")
    assert report["write scratch (allowed)"].startswith("SUCCEEDED")
    assert not target.exists() and not (Path.home() / ".tritium-pwned").exists()
    assert not (m.root / "injected.py").exists()
    shutil.rmtree(target_dir)
    _row(
        "write outside scratch (/tmp, own package, home)",
        "fails: " + report[f"write {target}"][9:90],
        "plugin keeps serving (Landlock; package copy read-only)",
        answered,
    )


def test_fork_bomb(core):
    core.add("fork_bomb", [])
    core.sup.start("fork_bomb")
    answered = core.serve("fork_bomb")
    report = core.scratch_report("fork_bomb")
    _blocked(report, "fork until refused", "spawn /bin/true")
    assert int(report["forked"]) == 0
    _row(
        "fork bomb",
        f"fails: {report['fork until refused'][9:90]} (0 processes)",
        "plugin keeps serving (seccomp: no new processes; RLIMIT_NPROC)",
        answered,
    )


def test_allocate_50_gb(core):
    core.add("alloc_50g", [])
    core.sup.start("alloc_50g")
    answered = core.serve("alloc_50g")
    report = core.scratch_report("alloc_50g")
    _blocked(report, "bytearray(50 GB)", "grow by 64 MiB")
    assert int(report["reached_mib"]) * MiB < MEMORY_LIMIT
    assert answered == ("alloc_50g", "alloc_50g")
    _row(
        "allocate 50 GB",
        f"fails: MemoryError (reached {report['reached_mib']} MiB of a 512 MiB RLIMIT_DATA)",
        "plugin keeps serving",
        answered,
    )


def _stopped_row(core, name: str, attack: str, reason: str, outcome: str) -> None:  # noqa: ANN001
    core.add(name, [])
    core.sup.start(name)
    answered = core.serve(name)
    assert answered == ("benign", "benign"), answered
    mp = core.sup.get(name)
    assert mp.state == PluginState.FAILED and "circuit open" in mp.error
    assert _counted(name, "stopped", reason) >= 1, security_events.counts()
    _row(attack, outcome, f"stopped: `{reason}` counted; circuit open after 2; fallback answers", answered)


def test_spin_cpu(core):
    _stopped_row(
        core, "spin_cpu", "spin the CPU forever", "hung", "killed at the call deadline (RLIMIT_CPU backs it)"
    )


def test_spin_cpu_in_the_background(core):
    """Spinning outside any call: no deadline sees it, RLIMIT_CPU does (SIGXCPU)."""
    core.add("spin_background", [])
    core.sup.start("spin_background")
    assert core.sup.wait_for("spin_background", lambda mp: mp.state == PluginState.FAILED, timeout=60)
    assert _counted("spin_background", "stopped", "cpu_limit") >= 1, security_events.counts()
    assert core.sup.get("spin_background").last_exit == "killed by signal 24"
    answered = core.serve("spin_background")
    assert answered == ("benign", "benign")
    _row(
        "spin the CPU in a background thread",
        f"killed by RLIMIT_CPU ({CPU_LIMIT_S} s) with SIGXCPU",
        "stopped: `cpu_limit` counted; circuit open after 2; fallback answers",
        answered,
    )


def test_segfault(core):
    _stopped_row(core, "segfault", "segfault", "segfault", "process dies (SIGSEGV)")


def test_ptrace_core(core, caplog):
    core.add("ptrace_core", [])
    core.sup.start("ptrace_core")
    answered = core.serve("ptrace_core")
    report = core.scratch_report("ptrace_core")
    assert report["ptrace"] == "blocked: EPERM", report
    assert answered == ("ptrace_core", "ptrace_core")
    _seen_by_host(caplog, "ptrace_core", "ptrace", f"ptrace(PTRACE_ATTACH, {os.getpid()})", 1)
    _row(
        "ptrace the core",
        "fails: EPERM",
        "plugin keeps serving; `blocked`/`ptrace` counted and logged (seccomp: to the core's listener)",
        answered,
    )


def test_signal_core(core, caplog):
    core.add("signal_core", [])
    core.sup.start("signal_core")
    answered = core.serve("signal_core")
    report = core.scratch_report("signal_core")
    keys = [k for k in report if k.startswith("kill(")]
    assert len(keys) == 2
    _blocked(report, *keys)
    _seen_by_host(caplog, "signal_core", "kill", f"kill({os.getpid()}, SIGCONT)", 2)
    _row(
        "signal the core",
        "fails: " + report[keys[0]][9:90],
        "plugin keeps serving; `blocked`/`kill` counted and logged (seccomp: signals to other "
        "processes go to the core's listener; Landlock signal scope)",
        answered,
    )


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_flood_output(core):
    core.add("flood_output", [])
    core.sup.start("flood_output")
    before = _rss()
    answered = core.serve("flood_output")
    time.sleep(2.0)
    more = core.request()  # routed to benign: the core is responsive during the flood
    core.current = "flood_output"
    again = core.request()
    core.current = "benign"
    growth = _rss() - before
    assert growth < 64 * MiB, growth
    assert answered == ("flood_output", "flood_output") and again == "flood_output" and more == "benign"
    tail = core.sup.get("flood_output").instance.process.output
    assert all(len(line) <= (1 << 16) + 16 for line in tail)
    _row(
        "flood stdout/stderr (128 MiB, no newline)",
        "drained; host memory grows < 64 MiB (asserted)",
        "plugin keeps serving (lines cut at 64 KiB, tail of 200)",
        answered,
    )


def test_big_message(core):
    core.add("big_message", [])
    core.sup.start("big_message")
    answered = core.serve("big_message")
    report = core.scratch_report("big_message")
    assert report.get(f"allocate {2 << 30}") == "blocked: MemoryError"
    assert answered[0] == "benign"
    assert _counted("big_message", "stopped", "oversized_message") >= 1
    _row(
        "send a 2 GB message",
        f"2 GB: MemoryError in the plugin; sent {report.get('payload')}",
        "refused by the 16 MiB receive limit; plugin killed, `oversized_message` counted; request rerouted",
        answered,
    )


def _refused(core, name: str, attack: str, reason: str, match: str, answered_check=True) -> None:  # noqa: ANN001
    with pytest.raises(SignatureError, match=match) as info:
        core.sup.start(name)
    assert core.sup.get(name).state == PluginState.FAILED
    assert _counted(name, "rejected", reason) >= 1
    answered = core.serve(name)
    assert answered == ("benign", "benign")
    _row(
        attack,
        "not started: " + info.value.reason.split(": ", 1)[-1][:70],
        f"rejected: `{reason}` counted",
        answered,
    )


def test_tampered_package(core):
    m = core.add("tampered", [])
    with open(m.root / "plugin_main.py", "a") as f:
        f.write("\nimport os; os.system('id')\n")
    _refused(core, "tampered", "tampered package", "file_changed", "changed after signing")


def test_untrusted_key(core):
    core.add("untrusted", [], key="other")
    _refused(core, "untrusted", "package signed by an untrusted key", "unknown_key", "unknown key")


def test_revoked_key(core, keys):
    from tritium.plugin_host.signature import sign_package
    from tritium.plugin_host.trust_store import generate_keypair, load_private_key

    kid, key_path, pub = generate_keypair(core.root / "revoked-key")
    core.store.add_key(pub)
    m = core.add("revoked", [], key=None)
    sign_package(m.root, load_private_key(key_path))
    core.store.revoke(kid)
    _refused(core, "revoked", "package signed by a revoked key", "revoked_key", "revoked key")


def test_no_accepted_request_lost(core):
    """Runs last in the module: every request the core accepted was answered, in order."""
    assert [s for s, _ in core.answered] == list(range(1, core.step + 1))
    assert core.sup.get("benign").state == PluginState.READY
    # A well-behaved plugin makes no blocked call once it serves (gRPC's start-up probes are counted
    # apart, as blocked_at_start).
    benign = {k: n for k, n in security_events.counts().items() if k[0] == "benign"}
    assert set(benign) <= {("benign", "blocked_at_start", "socket")}, benign


def _stable(text: str) -> str:
    # The table is committed: keep what changes between runs (key ids, temporary paths) out of it.
    text = re.sub(r"(sha256|signed) [0-9a-f]{16}…", r"\1 …", text)
    text = re.sub(r"/tmp/tritium-[^\s']*", "/tmp/…", text)
    text = re.sub(r"\b[0-9a-f]{16}\b", "<key id>", text)
    return re.sub(r" \(listed in [^)]*\)?", "", text).replace("|", "/")


def _write_table() -> None:
    lines = [
        "<!-- generated by tests/security/test_hostile_plugins.py; do not edit -->",
        "| attack | what happens in the plugin | what the host does | requests answered by (attack / next) |",
        "| --- | --- | --- | --- |",
    ]
    for r in ROWS.values():
        lines.append(f"| {r['attack']} | {_stable(r['outcome'])} | {r['host']} | {r['answered']} |")
    text = "\n".join(lines) + "\n"
    TABLE.write_text(text, encoding="utf-8")
    readme = TABLE.parents[2] / "README.md"
    if readme.is_file():
        begin, end = "<!-- attacks:begin -->\n", "<!-- attacks:end -->"
        doc = readme.read_text(encoding="utf-8")
        if begin in doc and end in doc:
            head, rest = doc.split(begin, 1)
            readme.write_text(head + begin + text + end + rest.split(end, 1)[1], encoding="utf-8")
