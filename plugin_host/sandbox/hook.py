"""The `Supervisor(sandbox=...)` hook and its configuration.

`Sandbox(config)` turns a plugin's (argv, env) into `python -I -m tritium.plugin_host.sandbox.exec --
<argv>` with a JSON spec in the environment; that small launcher applies rlimits, identity, user and
network namespaces, no_new_privs, Landlock and seccomp to itself and then execs the plugin (see
exec.py). The spec lists:

- read_only: the plugin's package folder (its verified copy), the language runtime (sys.prefix,
  sys.base_prefix, the interpreter's folder), the tritium packages a Python plugin imports (sdk,
  protos; core for builtin plugins, which run from their verified copy through run_copy.py), the
  shared libraries, /proc and CPU topology in /sys (numba and os.cpu_count read them), and the
  configured extra paths (a backend's model folder);
- read_write: the plugin's private scratch folder (its socket, TMPDIR, HOME, NUMBA_CACHE_DIR) and the
  shared-memory folder (/dev/shm: tensor segments), /dev/null;
- nothing else: no home directory, no /etc beyond the loader cache, no other plugin's files.

A confinement in `config.required` that this kernel cannot give refuses the launch with a
SandboxError naming it (checked here against the kernel's features, and again by the launcher, which
exits with status 121 naming it). The environment passed to the plugin is filtered (no secrets of the
core leak through it).
"""

from __future__ import annotations

import grp
import json
import logging
import os
import pwd
import sys
import sysconfig
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import SandboxError
from ..launcher import SandboxHook
from ..manifest import Manifest
from ..signature import RUN_COPY_MODULE
from .exec import SPEC_ENV
from .namespaces import NOBODY
from .rlimits import Limits

log = logging.getLogger("tritium.plugin_host.sandbox")

CONFINEMENTS = ("rlimits", "identity", "namespaces", "no_new_privs", "landlock", "seccomp")
# Everything but `identity` works unprivileged on this kernel, so it is always required; `identity`
# (a real uid drop) needs a root core, and is required whenever the core is root.
DEFAULT_REQUIRED = ("rlimits", "namespaces", "no_new_privs", "landlock", "seccomp")


def default_required() -> tuple[str, ...]:
    """The confinements required by default: DEFAULT_REQUIRED, plus `identity` for a root core."""
    return ("identity", *DEFAULT_REQUIRED) if os.geteuid() == 0 else DEFAULT_REQUIRED
REPO = Path(__file__).resolve().parents[2]
_PASS_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
_PASS_PREFIXES = ("TRITIUM_", "NUMBA_", "OMP_", "GRPC_", "OPENBLAS_", "MKL_")


def default_scratch_root() -> Path:
    """Where plugins' scratch folders live: $TRITIUM_SANDBOX_SCRATCH, else /var/lib/tritium/scratch for
    a root core (a place uid 65534 can reach), else ~/.cache/tritium/scratch."""
    env = os.environ.get("TRITIUM_SANDBOX_SCRATCH")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/tritium/scratch")
    return Path.home() / ".cache" / "tritium" / "scratch"


@dataclass(frozen=True)
class SandboxConfig:
    """Which confinements to apply and which of them are required, the limits, and extra paths."""

    confinements: tuple[str, ...] = CONFINEMENTS
    required: tuple[str, ...] = field(default_factory=default_required)
    limits: Limits = field(default_factory=Limits)
    # Per plugin name: limits that replace `limits` (e.g. a backend's larger memory bound).
    plugin_limits: dict[str, Limits] = field(default_factory=dict)
    # Extra read-only paths for every plugin (e.g. the models folder a backend loads from).
    read_paths: tuple[str, ...] = ()
    scratch_root: Path = field(default_factory=default_scratch_root)
    uid: int = NOBODY  # the identity of every plugin when uid_per_plugin is off
    gid: int = NOBODY
    # A root core gives each plugin its own uid/gid (uid_base + a stable hash of its name, skipping ids
    # the host or another plugin uses): plugins cannot read each other's shared-memory segments or
    # scratch, and RLIMIT_NPROC counts each plugin's threads alone.
    uid_per_plugin: bool = True
    uid_base: int = 61000
    uid_range: int = 1000
    pass_env: tuple[str, ...] = ()
    # Plugins may not start processes (seccomp: fork/vfork/clone without CLONE_THREAD fail with EAGAIN).
    subprocesses: bool = False
    # CPUs the plugin is pinned to (sched_setaffinity in the launcher); empty: inherited.
    cpus: tuple[int, ...] = ()

    def limits_for(self, name: str) -> Limits:
        """The limits of plugin `name`."""
        return self.plugin_limits.get(name, self.limits)


def runtime_read_paths(argv: list[str]) -> list[str]:
    """Read-only paths a plugin needs to run `argv`: the interpreter, the Python runtime, the shared
    libraries, the tritium packages, and the CPU topology files."""
    paths = {
        "/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/etc/localtime", "/proc",
        "/sys/devices/system/cpu", "/dev/urandom", "/dev/random",
        sys.prefix, sys.base_prefix, sysconfig.get_paths()["stdlib"],
        os.path.dirname(os.path.realpath(sys.executable)),
    }  # fmt: skip
    if argv:
        exe = argv[0] if os.path.isabs(argv[0]) else None
        if exe:
            paths.add(os.path.dirname(os.path.realpath(exe)))
    # The tritium packages every Python plugin imports (the SDK and the contract).
    paths |= {
        str(REPO / "tritium"),
        str(REPO / "sdk"),
        str(REPO / "protos"),
        str(REPO / "plugins" / "__init__.py"),
    }
    if any(a.startswith("tritium.plugins.") for a in argv):
        # A builtin plugin uses the engine library (tritium.core) for its kernels.
        paths.add(str(REPO / "core"))
    if RUN_COPY_MODULE in argv:
        # The runner that imports a package plugin from its verified copy (sandbox/run_copy.py).
        paths |= {str(REPO / "plugin_host" / "__init__.py"), str(REPO / "plugin_host" / "sandbox")}
    return sorted(p for p in paths if p)


class Sandbox:
    """The `Supervisor(sandbox=...)` hook. Remembers, per plugin name, the spec it launched with (for
    `tritium doctor`)."""

    def __init__(self, config: SandboxConfig | None = None, *, features: dict | None = None) -> None:
        self.config = config or SandboxConfig()
        self._features = features
        self.specs: dict[str, dict] = {}
        self._ids: dict[str, int] = {}  # plugin name -> its uid (= gid) under a root core

    def features(self) -> dict:
        """The kernel's confinement features (probed once; see doctor.kernel_features)."""
        if self._features is None:
            from .doctor import kernel_features

            self._features = kernel_features()
            log.info(
                "sandbox: kernel confinements %s", {k: v["available"] for k, v in self._features.items()}
            )
        return self._features

    def _check_kernel(self, manifest: Manifest, confinements: list[str]) -> None:
        feats = self.features()
        for name in self.config.required:
            if name not in confinements:
                raise SandboxError(manifest.name, f"confinement {name!r} is required but not configured")
            offered = feats.get(name, {})
            if not offered.get("available", False):
                from .. import security_events

                security_events.record(
                    manifest.name, "rejected", f"sandbox_missing_{name}", offered.get("detail", "")
                )
                raise SandboxError(
                    manifest.name,
                    f"required confinement {name!r} is not available on this kernel: "
                    f"{offered.get('detail', 'unknown')}; the plugin is not started",
                )

    def scratch_dir(self, name: str) -> Path:
        """The plugin's private scratch folder (created 0700, owned by the plugin's uid when root)."""
        d = self.config.scratch_root / name
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.config.scratch_root, 0o711)
        for sub in ("run", "tmp", "numba"):
            (d / sub).mkdir(exist_ok=True)
        return d

    def __call__(
        self, manifest: Manifest, argv: list[str], env: dict[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        """Wrap `argv` in the sandbox launcher and build its spec; SandboxError if a required
        confinement is not available."""
        cfg = self.config
        confinements = list(cfg.confinements)
        drop = "identity" in confinements and os.geteuid() == 0
        if "identity" in confinements and not drop and "identity" not in cfg.required:
            confinements.remove("identity")  # optional and impossible here: say so in the spec
        self._check_kernel(manifest, confinements)
        scratch = self.scratch_dir(manifest.name)
        uid, gid = self.identity_of(manifest.name) if drop else (cfg.uid, cfg.gid)
        if drop:
            _chown_tree(scratch, uid, gid)
        os.chmod(scratch, 0o700)
        shm_dir = env.get("TRITIUM_SHM_DIR", "/dev/shm")
        spec = {
            "confinements": confinements,
            "required": list(cfg.required),
            "limits": cfg.limits_for(manifest.name).as_dict(),
            "uid": uid,
            "subprocesses": cfg.subprocesses,
            "cpus": list(cfg.cpus),
            "gid": gid,
            "read_only": sorted({*runtime_read_paths(argv), str(manifest.root), *cfg.read_paths}),
            "read_write": [str(scratch), shm_dir, "/dev/null"],
            # Python's importer lists these folders to find `tritium.plugins` / `tritium.plugin_host`
            # submodules: names only, no file of another plugin can be read.
            "list_only": [str(REPO / "plugins"), str(REPO / "plugin_host")],
        }
        penv = {
            k: v
            for k, v in env.items()
            if k in _PASS_ENV or k.startswith(_PASS_PREFIXES) or k in cfg.pass_env
        }
        penv.update(
            {
                "HOME": str(scratch),
                "TMPDIR": str(scratch / "tmp"),
                "TRITIUM_PLUGIN_RUNTIME_DIR": str(scratch / "run"),
                "NUMBA_CACHE_DIR": str(scratch / "numba"),
                "PYTHONDONTWRITEBYTECODE": "1",
                SPEC_ENV: json.dumps(spec),
            }
        )
        self.specs[manifest.name] = {**spec, "scratch": str(scratch)}
        wrapped = [sys.executable, "-I", "-m", "tritium.plugin_host.sandbox.exec", "--", *argv]
        log.info("plugin %s: sandbox %s (required %s)", manifest.name, confinements, list(cfg.required))
        return wrapped, penv

    def identity_of(self, name: str) -> tuple[int, int]:
        """The uid and gid plugin `name` runs as under a root core: its own (see SandboxConfig), the
        same one for every restart, or the shared cfg.uid/cfg.gid when uid_per_plugin is off."""
        cfg = self.config
        if not cfg.uid_per_plugin:
            return cfg.uid, cfg.gid
        if name not in self._ids:
            taken = set(self._ids.values())
            start = zlib.crc32(name.encode()) % cfg.uid_range
            for i in range(cfg.uid_range):
                uid = cfg.uid_base + (start + i) % cfg.uid_range
                if uid not in taken and not _host_id_exists(uid):
                    self._ids[name] = uid
                    break
            else:
                raise SandboxError(name, f"no free uid in [{cfg.uid_base}, {cfg.uid_base + cfg.uid_range})")
        uid = self._ids[name]
        return uid, uid

    def with_config(self, **changes: object) -> Sandbox:
        """A new Sandbox with some config fields changed (same probed features)."""
        return Sandbox(replace(self.config, **changes), features=self._features)


def _host_id_exists(uid: int) -> bool:
    """True if the host has a user or a group with this id (a plugin must not become it)."""
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            pass
    return False


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give the scratch folder and everything in it to the plugin's ids: anything left by a run under
    other ids (numba's cache folders, a core that assigned uids differently) would be unwritable, and
    numba refuses to compile a cached kernel it cannot cache. A few hundred files at most."""
    for folder, dirs, files in os.walk(root):
        os.chown(folder, uid, gid, follow_symlinks=False)
        for f in [*dirs, *files]:
            os.chown(os.path.join(folder, f), uid, gid, follow_symlinks=False)


def chain_hooks(*hooks: SandboxHook | None) -> SandboxHook:
    """One sandbox hook applying `hooks` in order (each wraps the previous one's argv); put the
    Sandbox last so that its launcher runs first and confines everything the others exec."""
    present = [h for h in hooks if h is not None]

    def chained(manifest: Manifest, argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        for hook in present:
            argv, env = hook(manifest, argv, env)
        return argv, env

    return chained


__all__ = [
    "CONFINEMENTS",
    "DEFAULT_REQUIRED",
    "Limits",
    "Sandbox",
    "SandboxConfig",
    "chain_hooks",
    "runtime_read_paths",
]
