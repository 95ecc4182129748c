"""The sandbox launcher: apply every confinement to this (single-threaded) process, then exec the plugin.

    python -I -m tritium.plugin_host.sandbox.exec -- <plugin argv...>
    (the spec, JSON, in $TRITIUM_SANDBOX_SPEC; see sandbox.SandboxSpec)

It runs before any thread exists, so what it sets holds for the plugin in any language: Landlock and
seccomp bind the calling thread and everything it execs. Order matters:
  1. rlimits (while still allowed to set them as we like);
  2. identity: root makes the paths the plugin needs reachable by the spec's uid in a private mount
     namespace (private_mounts.py), then drops to it (setgroups, setresgid, setresuid);
  3. user + network namespaces (maps the spec's uid inside to our ids outside);
  4. no_new_privs;
  5. Landlock (filesystem allow-list, no TCP, IPC scoped to the sandbox);
  6. seccomp (last: the steps above need syscalls it denies, e.g. unshare); its listener (blocked
     calls the core is told about) goes to the core over the socket in $TRITIUM_SANDBOX_LISTENER_FD,
     and the launcher closes its copy, and that socket, before exec;
  7. execve.
A confinement the spec requires that cannot be applied ends the launcher with status 121 and one
line on stderr naming it, before the plugin runs. `--probe` applies everything the spec asks for but
requires nothing, prints what took effect as JSON and exits (tritium doctor).
"""

from __future__ import annotations

import json
import os
import sys

SPEC_ENV = "TRITIUM_SANDBOX_SPEC"
EXIT_CONFINEMENT_MISSING = 121


class _MissingError(Exception):
    pass


def apply(spec: dict, *, probe: bool = False) -> dict[str, str]:
    """Apply the confinements of `spec` in order; returns {confinement: "ok" | "skipped: why"}. Raises
    _MissingError for a required confinement that failed (never in probe mode)."""
    listener = _listener_socket()
    try:
        return _apply_steps(spec, probe, listener)
    finally:
        if listener is not None:
            os.close(listener)  # never inherited by the plugin


def _apply_steps(spec: dict, probe: bool, listener: int | None) -> dict[str, str]:
    from . import landlock, namespaces, rlimits, seccomp_profile

    if "seccomp" in spec.get("confinements", ()):
        try:
            import pyseccomp  # noqa: F401  (loaded now: after Landlock its files may be out of reach)
        except (ImportError, OSError):
            pass
    if spec.get("cpus"):
        os.sched_setaffinity(0, spec["cpus"])  # placement, not a confinement
    required = set() if probe else set(spec.get("required", ()))
    wanted = set(spec.get("confinements", ()))
    done: dict[str, str] = {}

    def step(name: str, fn) -> None:  # noqa: ANN001
        if name not in wanted:
            done[name] = "skipped: not configured"
            return
        try:
            detail = fn()
            done[name] = "ok" + (f" ({detail})" if detail else "")
        except Exception as exc:  # any failure of a step: report it, refuse if required
            done[name] = f"failed: {exc}"
            if name in required:
                raise _MissingError(f"{name}: {exc}") from None

    step("rlimits", lambda: rlimits.apply_limits(rlimits.Limits(**spec.get("limits", {}))) and "")
    step("identity", lambda: _identity(namespaces, spec))
    step(
        "namespaces",
        lambda: namespaces.enter_user_and_net_namespace(
            spec.get("uid", namespaces.NOBODY), spec.get("gid", namespaces.NOBODY)
        ),
    )
    step("no_new_privs", rlimits.set_no_new_privs)

    def restrict() -> str:
        ro, rw, lo = (spec.get(k, ()) for k in ("read_only", "read_write", "list_only"))
        r = landlock.restrict_self(ro, rw, lo)
        return f"handled fs {r.fs:#x} net {r.net:#x} scoped {r.scoped:#x}"

    step("landlock", restrict)

    def seccomp() -> str:
        subprocesses = spec.get("subprocesses", False)
        n = seccomp_profile.install(allow_subprocesses=subprocesses, listener_socket=listener)
        return f"{n} rules" + (", blocked calls reported to the core" if listener is not None else "")

    step("seccomp", seccomp)
    return done


def _listener_socket() -> int | None:
    """The core's socket for the seccomp listener ($TRITIUM_SANDBOX_LISTENER_FD), if it gave one."""
    from .seccomp_notify import LISTENER_ENV

    value = os.environ.pop(LISTENER_ENV, "")
    return int(value) if value.isdigit() else None


def _identity(namespaces, spec: dict) -> str:  # noqa: ANN001
    uid, gid = spec.get("uid", namespaces.NOBODY), spec.get("gid", namespaces.NOBODY)
    if os.geteuid() != 0:
        raise OSError(f"the core is not root (uid {os.getuid()}): cannot become uid {uid}")
    from .private_mounts import expose
    from .rlimits import set_dumpable

    # While still root: the runtime, the package copy, the model... must be reachable by `uid`.
    ro = [*spec.get("read_only", ()), *spec.get("list_only", ())]
    covered = expose(ro, spec.get("read_write", ()))
    namespaces.drop_to(uid, gid)
    runtime = os.path.realpath(sys.executable)
    if not os.access(runtime, os.X_OK):
        raise OSError(f"uid {uid} cannot run the interpreter {runtime} even after exposing its paths")
    set_dumpable(True)  # the uid change cleared it; /proc/self/uid_map must stay writable for step 3
    return f"uid {uid} gid {gid}" + (f"; exposed beneath {', '.join(covered)}" if covered else "")


def main(argv: list[str]) -> int:
    """Entry point: see the module docstring."""
    probe = "--probe" in argv
    try:
        spec = json.loads(os.environ.pop(SPEC_ENV, "{}"))
    except ValueError as exc:
        print(f"tritium-sandbox: bad {SPEC_ENV}: {exc}", file=sys.stderr)
        return 2
    target = argv[argv.index("--") + 1 :] if "--" in argv else []
    if not target and not probe:
        print("usage: python -m tritium.plugin_host.sandbox.exec -- <plugin argv...>", file=sys.stderr)
        return 2
    try:
        done = apply(spec, probe=probe)
    except _MissingError as exc:
        print(f"tritium-sandbox: required confinement missing, plugin not started: {exc}", file=sys.stderr)
        return EXIT_CONFINEMENT_MISSING
    if probe:
        print(json.dumps(done))
        return 0
    os.environ["TRITIUM_SANDBOX_APPLIED"] = ",".join(k for k, v in done.items() if v.startswith("ok"))
    try:
        os.execvpe(target[0], target, dict(os.environ))
    except OSError as exc:
        print(f"tritium-sandbox: cannot exec {target[0]}: {exc}", file=sys.stderr)
        return 127
    return 127  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
