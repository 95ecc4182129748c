"""`plugin.toml`: what a plugin package declares, parsed and checked.

    name = "cpu"                      # [a-z0-9_-], unique among plugins
    kind = "backend"                  # backend | scheduler | quantizer
    version = "0.1.0"                 # PEP 440
    api = "tritium.plugin.v1"         # contract the plugin serves
    core = ">=0.1,<1"                 # PEP 440 specifier: core versions it supports
    entry = ["{python}", "-m", "tritium.plugins.backend_cpu"]   # argv; any language
    description = "..."               # optional
    [files]                           # sha256 of every file of the package but plugin.toml
    "__main__.py" = "9f86d0..."

In `entry`, `{python}` stands for the core's Python interpreter and `{root}` for the package folder;
the command runs with the package folder as its working directory.
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from tritium.sdk.packaging import MANIFEST_NAME, package_files, sha256_file

from .errors import ManifestError, PluginIntegrityError

KINDS = ("backend", "scheduler", "quantizer")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_REQUIRED = ("name", "kind", "version", "api", "core", "entry", "files")
_OPTIONAL = ("description", "fallback")


@dataclass(frozen=True)
class Manifest:
    """A validated plugin.toml. `root` is the package folder, `path` the manifest file."""

    name: str
    kind: str
    version: str
    api: str
    core: SpecifierSet
    entry: tuple[str, ...]
    files: dict[str, str]
    path: Path
    description: str = ""
    fallback: str = ""
    extra: dict[str, object] = field(default_factory=dict, compare=False)

    @property
    def root(self) -> Path:
        """The package folder."""
        return self.path.parent

    def command(self) -> list[str]:
        """The entry argv with `{python}` and `{root}` substituted."""
        return [a.replace("{python}", sys.executable).replace("{root}", str(self.root)) for a in self.entry]


def _fail(path: Path, message: str) -> ManifestError:
    return ManifestError(path.parent.name, f"{path}: {message}")


def load_manifest(path: Path | str) -> Manifest:
    """Parse and validate a plugin.toml (or the plugin.toml inside a folder); ManifestError names the
    file, the field, what was expected and what was found."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, f"cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise _fail(path, f"not valid TOML: {exc}") from None

    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise _fail(path, f"missing required field(s) {missing}")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise _fail(path, f"unknown field(s) {unknown}; allowed: {list(_REQUIRED + _OPTIONAL)}")
    for key in ("name", "kind", "version", "api", "core"):
        if not isinstance(data[key], str):
            raise _fail(path, f"field {key!r} must be a string, found {type(data[key]).__name__}")
    name = data["name"]
    if not _NAME_RE.match(name):
        raise _fail(path, f"name {name!r} must match {_NAME_RE.pattern}")
    if data["kind"] not in KINDS:
        raise _fail(path, f"kind {data['kind']!r} is not one of {list(KINDS)}")
    try:
        Version(data["version"])
    except InvalidVersion:
        raise _fail(path, f"version {data['version']!r} is not a PEP 440 version") from None
    if not re.match(r"^tritium\.plugin\.v\d+$", data["api"]):
        raise _fail(path, f"api {data['api']!r} must look like 'tritium.plugin.v1'")
    try:
        core = SpecifierSet(data["core"])
    except InvalidSpecifier:
        raise _fail(
            path, f"core {data['core']!r} is not a PEP 440 version specifier (e.g. '>=0.1,<1')"
        ) from None
    entry = data["entry"]
    if not (isinstance(entry, list) and entry and all(isinstance(a, str) and a for a in entry)):
        raise _fail(path, f"entry must be a non-empty list of non-empty strings (argv), found {entry!r}")
    files = data["files"]
    if not isinstance(files, dict):
        raise _fail(
            path, f"files must be a table of 'relative path' = 'sha256 hex', found {type(files).__name__}"
        )
    for rel, digest in files.items():
        if not isinstance(digest, str) or not _SHA256_RE.match(digest):
            raise _fail(
                path, f"files[{rel!r}] must be 64 lowercase hex characters (sha256), found {digest!r}"
            )
        p = Path(rel)
        if p.is_absolute() or ".." in p.parts:
            raise _fail(path, f"files[{rel!r}] must be a relative path inside the package")
    for key in _OPTIONAL:
        if key in data and not isinstance(data[key], str):
            raise _fail(path, f"field {key!r} must be a string")
    return Manifest(
        name=name,
        kind=data["kind"],
        version=data["version"],
        api=data["api"],
        core=core,
        entry=tuple(entry),
        files=dict(files),
        path=path.resolve(),
        description=data.get("description", ""),
        fallback=data.get("fallback", ""),
    )


def verify_files(manifest: Manifest) -> None:
    """Check that the package holds exactly the manifest's files with the manifest's sha256s;
    PluginIntegrityError names the first file that differs, is missing or is not listed."""
    root = manifest.root
    present = set(package_files(root))
    for rel, digest in sorted(manifest.files.items()):
        p = root / rel
        if not p.is_file():
            raise PluginIntegrityError(manifest.name, f"{manifest.path}: listed file {rel!r} is missing")
        actual = sha256_file(p)
        if actual != digest:
            raise PluginIntegrityError(manifest.name, f"{p}: sha256 is {actual}, the manifest says {digest}")
    unlisted = sorted(present - set(manifest.files))
    if unlisted:
        raise PluginIntegrityError(manifest.name, f"{manifest.path}: files not listed in [files]: {unlisted}")


__all__ = ["MANIFEST_NAME", "Manifest", "load_manifest", "package_files", "sha256_file", "verify_files"]
