"""The handshake line (both directions) and version negotiation."""

from __future__ import annotations

import pytest
from tritium.plugin_host.errors import IncompatiblePluginError
from tritium.plugin_host.manifest import load_manifest
from tritium.plugin_host.versioning import check_handshake, check_manifest
from tritium.sdk import handshake as hs
from tritium.sdk.packaging import write_manifest

GOOD = "TRITIUM-PLUGIN|1|tritium.plugin.v1|unix|/tmp/tritium-plugin-x/plugin.sock|grpc"


def test_format_parse_round_trip():
    line = hs.format_handshake("/tmp/tritium-plugin-x/plugin.sock")
    assert line == GOOD
    h = hs.parse_handshake(line + "\n")
    assert (h.core_protocol, h.api_version, h.network, h.address, h.protocol) == (
        1,
        "tritium.plugin.v1",
        "unix",
        "/tmp/tritium-plugin-x/plugin.sock",
        "grpc",
    )
    assert h.api_major == 1 and h.target() == "unix:/tmp/tritium-plugin-x/plugin.sock"


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("", "expected 6"),
        ("Hello! I am a plugin, honest.", "expected 6"),
        ("1|tritium.plugin.v1|unix|/s|grpc", "expected 6"),
        ("GO-PLUGIN|1|tritium.plugin.v1|unix|/s|grpc", "first field must be 'TRITIUM-PLUGIN'"),
        (
            "TRITIUM-PLUGIN|one|tritium.plugin.v1|unix|/s|grpc",
            "core protocol version must be a positive integer",
        ),
        ("TRITIUM-PLUGIN|1|plugin.v1|unix|/s|grpc", "api version 'plugin.v1' is not of the form"),
        ("TRITIUM-PLUGIN|1|tritium.plugin.v1|tcp|127.0.0.1:5000|grpc", "network must be 'unix'"),
        ("TRITIUM-PLUGIN|1|tritium.plugin.v1|unix|relative.sock|grpc", "absolute socket path"),
        ("TRITIUM-PLUGIN|1|tritium.plugin.v1|unix|/s|netrpc", "protocol must be 'grpc'"),
        ("TRITIUM-PLUGIN|1|tritium.plugin.v1|unix|/s|grpc|extra", "found 7"),
        ("TRITIUM-PLUGIN|1|tritium.plugin.v1|unix|/" + "a" * 5000 + "|grpc", "longer than"),
    ],
)
def test_garbage_lines_are_rejected_with_the_field_at_fault(line, needle):
    with pytest.raises(hs.HandshakeFormatError) as err:
        hs.parse_handshake(line)
    assert needle in str(err.value) or "more than" in str(err.value)


@pytest.fixture
def manifest(tmp_path):
    def make(api="tritium.plugin.v1", core=">=0.1,<1"):
        (tmp_path / "m.py").write_text("")
        write_manifest(
            tmp_path, name="demo", kind="scheduler", version="0.3.0", entry=["x"], api=api, core=core
        )
        return load_manifest(tmp_path)

    return make


def test_compatible_manifest_passes(manifest):
    check_manifest(manifest(), core="0.1.0")


def test_api_major_mismatch_names_both_versions(manifest):
    with pytest.raises(IncompatiblePluginError) as err:
        check_manifest(manifest(api="tritium.plugin.v2"), core="0.1.0")
    assert (
        "tritium.plugin.v2" in str(err.value)
        and "tritium.plugin.v1" in str(err.value)
        and "demo" in str(err.value)
    )


def test_core_range_mismatch_names_both_versions(manifest):
    with pytest.raises(IncompatiblePluginError) as err:
        check_manifest(manifest(core=">=2.0"), core="0.1.0")
    assert ">=2.0" in str(err.value) and "0.1.0" in str(err.value)


def test_handshake_versions_are_negotiated(manifest):
    m = manifest()
    check_handshake(m, hs.parse_handshake(GOOD))
    with pytest.raises(IncompatiblePluginError, match=r"launch protocol 7 but this core speaks 1"):
        check_handshake(m, hs.parse_handshake(GOOD.replace("|1|", "|7|")))
    with pytest.raises(
        IncompatiblePluginError, match=r"announced tritium.plugin.v9 but this core serves tritium.plugin.v1"
    ):
        check_handshake(m, hs.parse_handshake(GOOD.replace("v1", "v9")))
