"""Version negotiation between the core and a plugin: contract major, launch protocol, core range."""

from __future__ import annotations

from packaging.version import Version
from tritium.sdk import handshake as hs

import tritium

from .errors import IncompatiblePluginError
from .manifest import Manifest

# Contract majors this core serves (one plugin package may serve several, one per process).
SUPPORTED_APIS = ("tritium.plugin.v1",)


def core_version() -> str:
    """The running core's version."""
    return tritium.__version__


def check_manifest(
    manifest: Manifest, *, core: str | None = None, apis: tuple[str, ...] = SUPPORTED_APIS
) -> None:
    """Refuse a plugin whose declared contract or core range does not fit this core (before launch)."""
    core = core or core_version()
    if manifest.api not in apis:
        raise IncompatiblePluginError(
            manifest.name,
            f"speaks {manifest.api} but this core serves {', '.join(apis)} ({manifest.path})",
        )
    if not manifest.core.contains(Version(core), prereleases=True):
        raise IncompatiblePluginError(
            manifest.name,
            f"supports core versions '{manifest.core}' but this core is {core} ({manifest.path})",
        )


def check_handshake(
    manifest: Manifest, handshake: hs.Handshake, *, apis: tuple[str, ...] = SUPPORTED_APIS
) -> None:
    """Refuse a running plugin whose handshake announces a protocol or contract this core lacks."""
    if handshake.core_protocol not in hs.SUPPORTED_CORE_PROTOCOLS:
        supported = ", ".join(map(str, hs.SUPPORTED_CORE_PROTOCOLS))
        raise IncompatiblePluginError(
            manifest.name,
            f"uses launch protocol {handshake.core_protocol} but this core speaks {supported}",
        )
    if handshake.api_version not in apis:
        raise IncompatiblePluginError(
            manifest.name,
            f"announced {handshake.api_version} but this core serves {', '.join(apis)}",
        )
    if handshake.api_version != manifest.api:
        raise IncompatiblePluginError(
            manifest.name,
            f"announced {handshake.api_version} but its manifest declares {manifest.api}",
        )
