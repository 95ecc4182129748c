"""seccomp user notification: the kernel ABI as this module spells it, a blocked call reaching the
core's watcher, and a plugin whose core is gone getting ENOSYS instead of hanging."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
from tritium.plugin_host import security_events
from tritium.plugin_host.blocked_calls import BlockedCallWatch, describe
from tritium.plugin_host.sandbox import seccomp_notify

_HEADER_PROBE = r"""
#include <sys/ioctl.h>
#include <linux/seccomp.h>
#include <stdio.h>
int main(void) {
    printf("%zu %zu %lu %lu %lu\n", sizeof(struct seccomp_notif), sizeof(struct seccomp_notif_resp),
           (unsigned long)SECCOMP_IOCTL_NOTIF_RECV, (unsigned long)SECCOMP_IOCTL_NOTIF_SEND,
           (unsigned long)SECCOMP_IOCTL_NOTIF_ID_VALID);
    return 0;
}
"""

# Loads the sandbox's seccomp profile with a listener socket, then tries a TCP socket.
_CHILD = textwrap.dedent(
    """
    import os, socket, sys
    from tritium.plugin_host.sandbox import rlimits, seccomp_profile
    fd = int(os.environ["TRITIUM_SANDBOX_LISTENER_FD"])
    rlimits.set_no_new_privs()
    seccomp_profile.install(listener_socket=fd)
    os.close(fd)
    sys.stdin.readline()  # the test decides when the core is gone
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        print("connected")
    except OSError as exc:
        print(exc.errno)
    """
)


def test_abi_matches_this_kernels_headers(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not os.path.exists("/usr/include/linux/seccomp.h"):
        pytest.skip("no C compiler or no linux/seccomp.h to compare with")
    src = tmp_path / "probe.c"
    src.write_text(_HEADER_PROBE)
    subprocess.run([cc, str(src), "-o", str(tmp_path / "probe")], check=True)
    out = subprocess.run([str(tmp_path / "probe")], capture_output=True, text=True, check=True).stdout
    assert [int(v) for v in out.split()] == [
        seccomp_notify.NOTIF.size,
        seccomp_notify.RESP.size,
        seccomp_notify.IOCTL_NOTIF_RECV,
        seccomp_notify.IOCTL_NOTIF_SEND,
        seccomp_notify.IOCTL_NOTIF_ID_VALID,
    ]


def _spawn(watch: BlockedCallWatch) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD],
        env={**os.environ, **watch.env()},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        pass_fds=(watch.child_fd(),),
    )
    watch.after_spawn()
    return proc


def test_blocked_call_is_counted_and_refused():
    security_events.reset()
    watch = BlockedCallWatch("notify_probe")
    watch.ready = True
    proc = _spawn(watch)
    try:
        assert watch.listening.wait(10), "the listener never reached the core"
        out, _ = proc.communicate("\n", timeout=10)
        assert out.strip() == str(97)  # EAFNOSUPPORT, as the profile says
        assert security_events.counts()[("notify_probe", "blocked", "socket")] == 1
        # The process is gone and reaped: the listener polls POLLHUP and the watcher ends by itself.
        assert watch.join(5)
    finally:
        watch.close()


def test_a_plugin_whose_core_is_gone_gets_enosys():
    """The listener closed (the core died): the kernel answers ENOSYS at once, nothing hangs."""
    watch = BlockedCallWatch("orphan")
    proc = _spawn(watch)
    assert watch.listening.wait(10)
    watch.close()  # the watcher thread closes the listener within a second
    time.sleep(1.5)
    started = time.monotonic()
    out, _ = proc.communicate("\n", timeout=10)
    assert out.strip() == str(38)  # ENOSYS
    assert time.monotonic() - started < 5


def test_describe_reads_arguments_like_the_kernel():
    assert describe("socket", (2, 1 | 0o2000000, 0)) == "socket(AF_INET, SOCK_STREAM, 0)"
    assert describe("ptrace", (16, 1234, 0, 0, 0, 0)) == "ptrace(PTRACE_ATTACH, 1234)"
    # Upper register bits are ignored, as the kernel reads an int.
    assert describe("kill", ((1 << 32) | 77, 18)) == "kill(77, SIGCONT)"
