"""Layered discovery: precedence, override logging, broken manifests, allow-list, entry points."""

from __future__ import annotations

import logging
import os
import sys

import pytest
from tritium.plugin_host.discovery import BUILTIN_DIR, default_layer_dirs, discover
from tritium.plugin_host.errors import PluginLoadError
from tritium.sdk.packaging import write_manifest


def _pkg(folder, name, version="0.1.0", kind="scheduler"):
    folder.mkdir(parents=True)
    (folder / "main.py").write_text(f"# {name} {version}\n")
    write_manifest(folder, name=name, kind=kind, version=version, entry=["{python}", "main.py"])
    return folder


@pytest.fixture
def layers(tmp_path):
    dirs = {k: tmp_path / k for k in ("builtin", "system", "user", "path1", "path2")}
    for d in dirs.values():
        d.mkdir()
    env = {
        "TRITIUM_SYSTEM_PLUGIN_DIR": str(dirs["system"]),
        "TRITIUM_USER_PLUGIN_DIR": str(dirs["user"]),
        "TRITIUM_PLUGIN_PATH": os.pathsep.join([str(dirs["path1"]), str(dirs["path2"])]),
    }
    layer_dirs = default_layer_dirs(env)
    layer_dirs["builtin"] = [dirs["builtin"]]
    return dirs, layer_dirs, env


def test_later_layer_overrides_and_log_names_the_winner(layers, caplog):
    dirs, layer_dirs, env = layers
    _pkg(dirs["builtin"] / "a", "alpha", "1.0")
    _pkg(dirs["system"] / "a", "alpha", "2.0")
    _pkg(dirs["user"] / "a", "alpha", "3.0")
    _pkg(dirs["builtin"] / "b", "beta", "1.0")
    _pkg(dirs["system"] / "b", "beta", "2.0")
    _pkg(dirs["user"] / "c", "gamma", "1.0")
    with caplog.at_level(logging.INFO, logger="tritium.plugin_host.discovery"):
        d = discover(layer_dirs, entry_points=False, env=env)
    assert {n: (p.layer, p.manifest.version) for n, p in d.plugins.items()} == {
        "alpha": ("user", "3.0"),
        "beta": ("system", "2.0"),
        "gamma": ("user", "1.0"),
    }
    assert [layer for layer, _ in d.plugins["alpha"].overrides] == ["builtin", "system"]
    assert any(
        "alpha" in r.message
        and "overrides" in r.message
        and str(dirs["user"]) in r.message
        and "(user layer)" in r.message
        for r in caplog.records
    )


def test_plugin_path_beats_user_and_earlier_path_entry_wins(layers):
    dirs, layer_dirs, env = layers
    _pkg(dirs["user"] / "a", "alpha", "1.0")
    _pkg(dirs["path2"] / "a", "alpha", "2.0")
    _pkg(dirs["path1"] / "a", "alpha", "3.0")
    d = discover(layer_dirs, entry_points=False, env=env)
    assert d.plugins["alpha"].layer == "path" and d.plugins["alpha"].manifest.version == "3.0"


def test_path_entry_may_be_a_package_folder_itself(tmp_path):
    pkg = _pkg(tmp_path / "single", "solo")
    d = discover({"path": [pkg]}, entry_points=False, env={})
    assert d.require("solo").root == pkg.resolve()


def test_broken_manifest_is_an_error_not_a_fallback(layers, caplog):
    dirs, layer_dirs, env = layers
    _pkg(dirs["builtin"] / "alpha", "alpha", "1.0")
    broken = dirs["user"] / "alpha"
    broken.mkdir()
    (broken / "plugin.toml").write_text('name = "alpha"\nkind = "scheduler"\n')
    with caplog.at_level(logging.ERROR):
        d = discover(layer_dirs, entry_points=False, env=env)
    entry = d.plugins["alpha"]
    assert not entry.ok and entry.layer == "user"
    with pytest.raises(PluginLoadError) as err:
        d.require("alpha")
    assert (
        "alpha" in str(err.value)
        and "missing required field" in str(err.value)
        and str(broken) in str(err.value)
    )
    assert [p.name for p in d.errors()] == ["alpha"]
    assert any("failed to load" in r.message for r in caplog.records)


def test_allow_list(layers):
    dirs, layer_dirs, env = layers
    _pkg(dirs["builtin"] / "a", "alpha")
    _pkg(dirs["builtin"] / "b", "beta")
    d = discover(layer_dirs, entry_points=False, env={**env, "TRITIUM_PLUGINS_ALLOW": "beta, nothere"})
    assert list(d.plugins) == ["beta"] and d.excluded == ["alpha"]
    with pytest.raises(PluginLoadError, match="excluded by the allow-list"):
        d.require("alpha")
    with pytest.raises(PluginLoadError, match="not found in any plugin layer"):
        d.require("nothere")


def test_entry_point_plugins_are_found_without_importing_them(tmp_path, monkeypatch):
    site = tmp_path / "site"
    pkg = _pkg(site / "fancy_backend", "fancy", kind="backend")
    # The package's __init__ would fail if the core imported it.
    (pkg / "__init__.py").write_text("raise RuntimeError('the core must not import plugin code')\n")
    dist = site / "fancy_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fancy-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[tritium.plugins]\nfancy = fancy_backend\n")
    monkeypatch.syspath_prepend(str(site))
    d = discover({"builtin": []}, entry_points=True, env={})
    assert d.plugins["fancy"].layer == "entry_point"
    assert d.plugins["fancy"].path == (pkg / "plugin.toml").resolve()
    assert "fancy_backend" not in sys.modules


def test_builtin_layer_holds_the_shipped_plugins():
    d = discover({"builtin": [BUILTIN_DIR]}, entry_points=False, env={})
    assert {"cpu", "basic"} <= set(d.plugins)
    assert d.plugins["cpu"].manifest.kind == "backend" and d.plugins["basic"].manifest.kind == "scheduler"


def _tar(archive, folder, arcroot):
    import tarfile

    with tarfile.open(archive, "w:gz") as t:
        t.add(folder, arcname=arcroot)
    return archive


def test_archives_are_packages_too(tmp_path, monkeypatch):
    import zipfile

    monkeypatch.setenv("TRITIUM_PLUGIN_CACHE", str(tmp_path / "cache"))
    layer = tmp_path / "layer"
    layer.mkdir()
    _tar(layer / "alpha.tar.gz", _pkg(tmp_path / "src" / "alpha", "alpha", "1.5"), "alpha")
    beta = _pkg(tmp_path / "src" / "beta", "beta", "2.5")
    with zipfile.ZipFile(layer / "beta.zip", "w") as z:  # files at the archive's root
        for f in beta.iterdir():
            z.write(f, f.name)
    d = discover({"user": [layer]}, entry_points=False, env={})
    assert d.require("alpha").version == "1.5" and d.require("beta").version == "2.5"
    from tritium.plugin_host.manifest import verify_files

    verify_files(d.require("alpha"))
    assert str(tmp_path / "cache") in str(d.require("beta").path)


def test_archive_escaping_its_folder_is_refused(tmp_path, monkeypatch):
    import io
    import tarfile

    monkeypatch.setenv("TRITIUM_PLUGIN_CACHE", str(tmp_path / "cache"))
    layer = tmp_path / "layer"
    layer.mkdir()
    with tarfile.open(layer / "evil.tar.gz", "w:gz") as t:
        data = b"owned\n"
        info = tarfile.TarInfo("../../outside.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    with tarfile.open(layer / "linky.tar.gz", "w:gz") as t:
        info = tarfile.TarInfo("plugin.toml")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        t.addfile(info)
    d = discover({"user": [layer]}, entry_points=False, env={})
    with pytest.raises(PluginLoadError, match=r"evil.tar.gz.*'../../outside.txt' would be unpacked outside"):
        d.require("evil.tar.gz")
    with pytest.raises(PluginLoadError, match=r"linky.tar.gz.*'plugin.toml' is not a regular file"):
        d.require("linky.tar.gz")
    assert not (tmp_path / "outside.txt").exists()
