"""Helpers of the security tests: where the test plugins are, and signed packages built from them."""

from __future__ import annotations

import shutil
from pathlib import Path

from tritium.plugin_host.manifest import load_manifest
from tritium.plugin_host.signature import sign_package
from tritium.sdk.packaging import write_manifest

HERE = Path(__file__).resolve().parent
HOSTILE = HERE / "plugins" / "hostile.py"
MISBEHAVING = HERE.parent / "plugin_host" / "plugins" / "misbehaving.py"


def make_signed_package(
    folder: Path,
    source: Path,
    args: list[str],
    key,
    *,
    name: str,
    kind: str = "scheduler",
    version: str = "0.1.0",
):
    """A package in `folder` running `source` with `args`, signed with `key` (None: unsigned)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copy(source, folder / "plugin_main.py")
    write_manifest(folder, name=name, kind=kind, version=version, entry=["{python}", "plugin_main.py", *args])
    if key is not None:
        sign_package(folder, key)
    return load_manifest(folder)
