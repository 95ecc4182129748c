"""plugin.toml parsing, validation and file integrity."""

from __future__ import annotations

import sys

import pytest
from tritium.plugin_host.discovery import BUILTIN_DIR
from tritium.plugin_host.errors import ManifestError, PluginIntegrityError
from tritium.plugin_host.manifest import load_manifest, verify_files
from tritium.sdk.packaging import rehash, write_manifest

GOOD = """\
name = "demo"
kind = "scheduler"
version = "1.2.0"
api = "tritium.plugin.v1"
core = ">=0.1,<1"
entry = ["{python}", "main.py"]

[files]
"""


def _package(tmp_path, text=GOOD, files=None):
    files = {"main.py": "print('hi')\n"} if files is None else files
    for rel, content in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(content)
    (tmp_path / "plugin.toml").write_text(text)
    rehash(tmp_path)
    return tmp_path


def test_good_manifest_loads_and_verifies(tmp_path):
    m = load_manifest(_package(tmp_path))
    assert (m.name, m.kind, m.version, m.api) == ("demo", "scheduler", "1.2.0", "tritium.plugin.v1")
    assert m.core.contains("0.1.0") and not m.core.contains("1.0.0")
    assert m.command() == [sys.executable, "main.py"]
    assert set(m.files) == {"main.py"}
    verify_files(m)


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda t: t.replace('name = "demo"\n', ""), "missing required field(s) ['name']"),
        (lambda t: t.replace('"scheduler"', '"tokenizer"'), "kind 'tokenizer' is not one of"),
        (lambda t: t.replace('"1.2.0"', '"one point two"'), "is not a PEP 440 version"),
        (lambda t: t.replace('">=0.1,<1"', '"at least 0.1"'), "is not a PEP 440 version specifier"),
        (lambda t: t.replace('"tritium.plugin.v1"', '"grpc"'), "api 'grpc' must look like"),
        (lambda t: t.replace('["{python}", "main.py"]', "[]"), "entry must be a non-empty list"),
        (lambda t: t.replace('name = "demo"', 'name = "Demo Plugin"'), "name 'Demo Plugin' must match"),
        (lambda t: 'colour = "blue"\n' + t, "unknown field(s) ['colour']"),
        (lambda t: t.replace('name = "demo"', "name = 3"), "field 'name' must be a string"),
        (lambda t: t + '"x.py" = "abc"\n', "must be 64 lowercase hex characters"),
        (lambda t: t + '"../escape.py" = "' + "0" * 64 + '"\n', "must be a relative path inside the package"),
        (lambda t: t.replace("[files]", "[files"), "not valid TOML"),
    ],
)
def test_invalid_manifest_names_file_and_field(tmp_path, edit, needle):
    _package(tmp_path)
    path = tmp_path / "plugin.toml"
    path.write_text(edit(path.read_text()))
    with pytest.raises(ManifestError) as err:
        load_manifest(tmp_path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="no such file"):
        load_manifest(tmp_path)


def test_tampered_file_is_refused(tmp_path):
    m = load_manifest(_package(tmp_path))
    (tmp_path / "main.py").write_text("print('evil')\n")
    with pytest.raises(PluginIntegrityError, match=r"main\.py: sha256 is [0-9a-f]{64}, the manifest says"):
        verify_files(m)


def test_unlisted_and_missing_files_are_refused(tmp_path):
    m = load_manifest(_package(tmp_path, files={"main.py": "x\n", "lib/helper.py": "y\n"}))
    assert set(m.files) == {"main.py", "lib/helper.py"}
    (tmp_path / "lib" / "extra.so").write_bytes(b"\x7fELF")
    with pytest.raises(PluginIntegrityError, match=r"not listed in \[files\]: \['lib/extra.so'\]"):
        verify_files(m)
    (tmp_path / "lib" / "extra.so").unlink()
    (tmp_path / "lib" / "helper.py").unlink()
    with pytest.raises(PluginIntegrityError, match="listed file 'lib/helper.py' is missing"):
        verify_files(m)


def test_caches_are_not_package_files(tmp_path):
    m = load_manifest(_package(tmp_path))
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    verify_files(m)


def test_write_manifest_round_trips(tmp_path):
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    write_manifest(
        tmp_path,
        name="shell",
        kind="backend",
        version="2.0",
        entry=["./run.sh"],
        description='a "quoted" plugin',
        fallback="cpu",
    )
    m = load_manifest(tmp_path)
    assert m.description == 'a "quoted" plugin' and m.fallback == "cpu" and m.entry == ("./run.sh",)
    verify_files(m)


@pytest.mark.parametrize("folder", sorted(p.parent.name for p in BUILTIN_DIR.glob("*/plugin.toml")))
def test_builtin_packages_match_their_manifests(folder):
    # Fails after editing a builtin plugin without `python -m tritium.sdk.packaging plugins/<folder>`.
    m = load_manifest(BUILTIN_DIR / folder)
    verify_files(m)
    assert m.api == "tritium.plugin.v1"
