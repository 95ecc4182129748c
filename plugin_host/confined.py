"""The supervisor every production path uses: signature checked before each launch, sandbox around
each process (issue 5). Tests and tools that need a bare supervisor construct `Supervisor()` directly.

Development in a source checkout: the builtin plugins carry no release signature there, so they run
only with the loud switch TRITIUM_ALLOW_UNSIGNED_PLUGINS=1 (see trust/README.md).
"""

from __future__ import annotations

from collections.abc import Iterable

from .sandbox.hook import Limits, Sandbox, SandboxConfig
from .signature import SignatureVerifier
from .supervisor import RestartPolicy, Supervisor


def confined_supervisor(*, read_paths: Iterable[str] = (), plugin_limits: dict[str, Limits] | None = None,
                        cpus: tuple[int, ...] = (), policy: RestartPolicy | None = None) -> Supervisor:
    """A Supervisor that verifies every package (and runs the verified copy) and sandboxes every process.

    `read_paths` are extra read-only paths for the plugins (a backend's model file or folder);
    `plugin_limits` replaces the default rlimits per plugin name (a backend needs more memory).
    """
    config = SandboxConfig(read_paths=tuple(str(p) for p in read_paths),
                           plugin_limits=dict(plugin_limits or {}), cpus=cpus)
    return Supervisor(verify=SignatureVerifier(), sandbox=Sandbox(config), policy=policy)
