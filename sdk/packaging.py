"""Make a plugin package: write its plugin.toml with the sha256 of every file.

    python -m tritium.sdk.packaging <folder>      # refresh the [files] table of <folder>/plugin.toml

The host refuses a package whose files differ from the manifest (or that holds unlisted files), so
run this after every change to a plugin's files.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

MANIFEST_NAME = "plugin.toml"
# The detached Ed25519 signature of a package (plugin_host/signature.py); it signs the files, so it is
# not one of them.
SIGNATURE_NAME = "plugin.sig"
# Byproducts of running a package; they are not part of it.
IGNORED_PARTS = ("__pycache__", ".pytest_cache")
IGNORED_SUFFIXES = (".pyc", ".pyo")


def package_files(root: Path) -> list[str]:
    """Every file of a package folder (relative, '/'-separated, sorted), except the manifest, the
    signature and caches."""
    out = []
    for p in sorted(Path(root).rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or rel.as_posix() in (MANIFEST_NAME, SIGNATURE_NAME):
            continue
        if any(part in IGNORED_PARTS for part in rel.parts) or p.suffix in IGNORED_SUFFIXES:
            continue
        out.append(rel.as_posix())
    return out


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files_table(root: Path) -> str:
    return "[files]\n" + "".join(f'"{rel}" = "{sha256_file(root / rel)}"\n' for rel in package_files(root))


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_manifest(
    root: Path | str,
    *,
    name: str,
    kind: str,
    version: str,
    entry: list[str],
    api: str = "tritium.plugin.v1",
    core: str = ">=0.1,<1",
    description: str = "",
    fallback: str = "",
) -> Path:
    """Write `root`/plugin.toml for the files now in `root`; returns its path."""
    root = Path(root)
    lines = [
        f"name = {_toml_str(name)}",
        f"kind = {_toml_str(kind)}",
        f"version = {_toml_str(version)}",
        f"api = {_toml_str(api)}",
        f"core = {_toml_str(core)}",
        "entry = [" + ", ".join(_toml_str(a) for a in entry) + "]",
    ]
    if description:
        lines.append(f"description = {_toml_str(description)}")
    if fallback:
        lines.append(f"fallback = {_toml_str(fallback)}")
    path = root / MANIFEST_NAME
    path.write_text("\n".join(lines) + "\n\n" + _files_table(root), encoding="utf-8")
    return path


def rehash(root: Path | str) -> Path:
    """Rewrite the [files] table of `root`/plugin.toml (the table must be the file's last section)."""
    root = Path(root)
    path = root / MANIFEST_NAME
    text = path.read_text(encoding="utf-8")
    head = re.split(r"(?m)^\[files\]\s*$", text)[0].rstrip() + "\n\n"
    path.write_text(head + _files_table(root), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """Command line: refresh the [files] table of each folder given."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m tritium.sdk.packaging <plugin folder>...", file=sys.stderr)
        return 2
    for folder in args:
        rehash(Path(folder))
        print(f"{folder}: {len(package_files(Path(folder)))} files hashed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
