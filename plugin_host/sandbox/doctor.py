"""What confinements this kernel offers, and which ones a running plugin process actually has.

`kernel_features()` runs the sandbox launcher in probe mode in a child process (the same code path a
plugin launch takes), so "available" means "was applied for real here", not "the kernel config says
so". `process_confinements(pid)` reads a live process's state from /proc: uid, no_new_privs, seccomp
mode, namespaces and limits (Landlock has no /proc view: the spec the process was launched with says
which confinements were required, and the launcher refuses to exec without them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from . import landlock, seccomp_profile
from .exec import SPEC_ENV

_ALL = ["rlimits", "identity", "namespaces", "no_new_privs", "landlock", "seccomp"]


def _cgroup_memory() -> str:
    for v2 in (Path("/sys/fs/cgroup/cgroup.controllers"), Path("/sys/fs/cgroup/unified/cgroup.controllers")):
        if v2.is_file():
            ctl = v2.read_text().split()
            state = "present" if "memory" in ctl else "ABSENT"
            names = " ".join(ctl) or "none"
            text = f"cgroup v2 at {v2.parent} (controllers: {names}): memory controller {state}"
            break
    else:
        text = "no cgroup v2 hierarchy"
    if Path("/sys/fs/cgroup/memory/cgroup.procs").is_file():
        text += "; a cgroup v1 memory hierarchy is mounted (not used)"
    return text + "; plugin memory is bounded by RLIMIT_DATA"


def kernel_features(timeout: float = 20.0) -> dict[str, dict]:
    """{confinement: {"available": bool, "detail": str}} for every confinement, plus "kernel" and
    "cgroup_memory" entries (detail only)."""
    # The interpreter's folders: the identity step must make them reachable by the plugin's uid for real.
    runtime = sorted({sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))})
    spec = {"confinements": _ALL, "required": [], "limits": {}, "read_only": runtime, "read_write": []}
    env = {**os.environ, SPEC_ENV: json.dumps(spec)}
    try:
        out = subprocess.run(
            [sys.executable, "-I", "-m", "tritium.plugin_host.sandbox.exec", "--probe"],
            env=env, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        probed = json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {}
    except (subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        probed = {name: f"failed: probe did not run ({exc})" for name in _ALL}
    abi = landlock.abi_version()
    sc_ok, sc_detail = seccomp_profile.available()
    details = {
        "landlock": f"ABI {abi}" if abi else "not available",
        "seccomp": sc_detail if sc_ok else sc_detail,
        "namespaces": "user + network namespaces (unprivileged unshare)",
        "identity": "real drop to the plugin's own uid (root core; paths exposed in a private mount ns)",
        "rlimits": "RLIMIT_DATA/CPU/NOFILE/NPROC/FSIZE/CORE",
        "no_new_privs": "prctl(PR_SET_NO_NEW_PRIVS)",
    }
    features = {
        name: {
            "available": str(probed.get(name, "")).startswith("ok"),
            "detail": f"{details[name]}: {probed.get(name, 'not probed')}",
        }
        for name in _ALL
    }
    features["kernel"] = {"available": True, "detail": os.uname().release}
    features["cgroup_memory"] = {"available": False, "detail": _cgroup_memory()}
    return features


def _status_fields(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def process_confinements(pid: int, spec: dict | None = None) -> dict[str, str]:
    """The confinements process `pid` has, read from /proc (the caller must be allowed to read them),
    with the sandbox spec it was launched with if given (Sandbox.specs)."""
    st = _status_fields(pid)
    report = {
        "uid": st.get("Uid", "?").split()[0] + " (outside)",
        "no_new_privs": "yes" if st.get("NoNewPrivs") == "1" else "no",
        "seccomp": {"0": "none", "1": "strict", "2": "filter"}.get(st.get("Seccomp", ""), "?"),
    }
    try:
        inside, outside, _ = Path(f"/proc/{pid}/uid_map").read_text().split()[:3]
        report["uid"] = f"{inside} inside its namespace, {outside} outside"
    except (OSError, ValueError):
        pass
    for ns in ("user", "net"):
        try:
            own = os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
        except OSError:
            own = False
        report[f"{ns}_namespace"] = "own" if own else "host's"
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith(("Max data size", "Max cpu time", "Max processes", "Max open files")):
                parts = line.split()
                report[" ".join(parts[:-3]).lower()] = parts[-3]
    except OSError:
        pass
    if spec is not None:
        # Landlock has no /proc view: what the launcher applied is what the spec required (it refuses
        # to exec the plugin otherwise) plus the optional ones it asked for.
        report["confinements"] = ",".join(spec.get("confinements", ()))
        report["required"] = ",".join(spec.get("required", ()))
    return report
