"""The one line a plugin prints on stdout when it is ready, and the magic cookie that launched it.

Format (see sdk/HANDSHAKE.md), fields separated by `|`, one line, newline-terminated:

    TRITIUM-PLUGIN|<core protocol version>|<api version>|<network>|<address>|<protocol>
    TRITIUM-PLUGIN|1|tritium.plugin.v1|unix|/run/user/1000/tritium-plugin-x1y2/plugin.sock|grpc

Both sides share this module, so the host parses exactly what the SDK prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAGIC = "TRITIUM-PLUGIN"
# Version of the launch protocol itself (this line, the cookie, the socket setup); independent of the
# gRPC contract version. The host lists the versions it speaks in SUPPORTED_CORE_PROTOCOLS.
CORE_PROTOCOL_VERSION = 1
SUPPORTED_CORE_PROTOCOLS = (1,)
API_VERSION = "tritium.plugin.v1"
# Like go-plugin's magic cookie: not a secret, only proof the process was started by a Tritium host,
# so a plugin run by hand explains itself instead of waiting forever for a host that never comes.
COOKIE_KEY = "TRITIUM_PLUGIN_MAGIC_COOKIE"
COOKIE_VALUE = "b1.58-7f3c9a2e1d4b4c8e9a6f0d2c5b7e8a91"
# The longest handshake line accepted; anything longer is garbage, not a slow writer.
MAX_LINE = 4096

_API_RE = re.compile(r"^tritium\.plugin\.v(\d+)$")


class HandshakeFormatError(ValueError):
    """A handshake line that does not follow the format; the message says which field and why."""


@dataclass(frozen=True)
class Handshake:
    """A parsed handshake line."""

    core_protocol: int
    api_version: str
    network: str
    address: str
    protocol: str

    @property
    def api_major(self) -> int:
        """The contract's major version (the N of tritium.plugin.vN)."""
        return api_major(self.api_version)

    def target(self) -> str:
        """The gRPC target string to dial (e.g. `unix:/path/plugin.sock`)."""
        return f"unix:{self.address}"


def api_major(api_version: str) -> int:
    """The N of `tritium.plugin.vN`; HandshakeFormatError for anything else."""
    m = _API_RE.match(api_version)
    if not m:
        raise HandshakeFormatError(f"api version {api_version!r} is not of the form 'tritium.plugin.v<N>'")
    return int(m.group(1))


def format_handshake(address: str, *, api_version: str = API_VERSION, network: str = "unix") -> str:
    """The handshake line (without newline) announcing a gRPC server at `address`."""
    return "|".join([MAGIC, str(CORE_PROTOCOL_VERSION), api_version, network, address, "grpc"])


def parse_handshake(line: str) -> Handshake:
    """Parse one handshake line strictly; HandshakeFormatError names the first field that is wrong."""
    if len(line) > MAX_LINE:
        raise HandshakeFormatError(f"line is {len(line)} characters long, more than {MAX_LINE}")
    text = line.rstrip("\r\n")
    if "\n" in text or "\r" in text:
        raise HandshakeFormatError("line contains an embedded newline")
    fields = text.split("|")
    if len(fields) != 6:
        raise HandshakeFormatError(
            f"expected 6 '|'-separated fields ({MAGIC}|core|api|network|address|protocol), "
            f"found {len(fields)}"
        )
    magic, core, api, network, address, protocol = fields
    if magic != MAGIC:
        raise HandshakeFormatError(f"first field must be {MAGIC!r}, found {magic!r}")
    if not core.isdigit():
        raise HandshakeFormatError(f"core protocol version must be a positive integer, found {core!r}")
    api_major(api)
    if network != "unix":
        raise HandshakeFormatError(f"network must be 'unix', found {network!r}")
    if not address.startswith("/"):
        raise HandshakeFormatError(f"address must be an absolute socket path, found {address!r}")
    if protocol != "grpc":
        raise HandshakeFormatError(f"protocol must be 'grpc', found {protocol!r}")
    return Handshake(int(core), api, network, address, protocol)
