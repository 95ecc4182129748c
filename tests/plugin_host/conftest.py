"""Fixtures of the plugin-host tests: temporary plugin packages built from the shipped test plugins."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tritium.plugin_host.manifest import load_manifest
from tritium.sdk.packaging import write_manifest

TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"


@pytest.fixture(scope="module")
def make_package(tmp_path_factory):
    """make_package(mode, name=mode, kind=...) -> Manifest of a package running misbehaving.py <mode>."""
    root = tmp_path_factory.mktemp("packages")

    def make(mode: str, name: str | None = None, kind: str | None = None, **manifest_fields):
        name = name or mode.replace("_", "-")
        if kind is None:
            kind = "backend" if "backend" in mode else "scheduler"
        folder = root / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        shutil.copy(TEST_PLUGINS / "misbehaving.py", folder / "plugin_main.py")
        write_manifest(
            folder,
            name=name,
            kind=kind,
            version="0.1.0",
            entry=["{python}", "plugin_main.py", mode],
            **manifest_fields,
        )
        return load_manifest(folder)

    return make
