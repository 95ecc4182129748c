"""The release flow of trust/README.md end to end, with a throwaway release key: tools/sign_release.py
signs a release tree's builtin plugins, and `tritium serve` then runs them verified and sandboxed with
the development switch off, answering a completion; a package edited after signing is refused."""

from __future__ import annotations

import shutil
import subprocess
import sys

import httpx
import pytest
from tritium.plugin_host.trust_store import generate_keypair

from tests.conftest import REPO
from tests.serving.server_process import free_port, start_server


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    plugins = root / "plugins"
    shutil.copytree(REPO / "plugins", plugins, ignore=shutil.ignore_patterns("__pycache__", "plugin.sig"))
    for stray in plugins.iterdir():  # the package folders only (plugins/ is also a Python package)
        if not (stray / "plugin.toml").exists():
            shutil.rmtree(stray) if stray.is_dir() else stray.unlink()
    trust = root / "trust"
    (trust / "keys").mkdir(parents=True)
    kid, key_path, pub_path = generate_keypair(root / "offline")
    shutil.copy(pub_path, trust / "keys" / pub_path.name)
    out = subprocess.run(
        [sys.executable, str(REPO / "tools" / "sign_release.py"), "--key", str(key_path),
         "--plugins", str(plugins), "--trust", str(trust)],
        capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return root, kid, out.stdout


def test_sign_release_signs_every_builtin_package(release):
    root, kid, report = release
    names = sorted(p.name for p in (root / "plugins").iterdir())
    assert names == ["backend_cpu", "quantizer_ternary", "scheduler_basic"]
    assert all((root / "plugins" / n / "plugin.sig").exists() for n in names)
    assert report.count(f"key {kid}") == 3


def test_serve_runs_release_signed_plugins_without_the_dev_switch(release, tmp_path, monkeypatch):
    root, _, _ = release
    monkeypatch.setenv("TRITIUM_ALLOW_UNSIGNED_PLUGINS", "0")
    monkeypatch.setenv("TRITIUM_TRUST_RELEASE_DIR", str(root / "trust"))
    monkeypatch.setenv("TRITIUM_TRUST_SYSTEM_DIR", str(tmp_path / "no-system"))
    monkeypatch.setenv("TRITIUM_TRUST_USER_DIR", str(tmp_path / "user"))
    monkeypatch.setenv("TRITIUM_PLUGIN_PATH", str(root / "plugins"))  # the release tree's packages win
    port = free_port()
    proc, base = start_server(["--threads", "1"], port, tmp_path / "serve.log")
    try:
        r = httpx.post(f"{base}/v1/completions", json={"prompt": "Once upon a time", "max_tokens": 4,
                                                        "temperature": 0}, timeout=120)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    log = (tmp_path / "serve.log").read_text()
    assert "TRITIUM_ALLOW_UNSIGNED_PLUGINS" not in log  # no unsigned-plugin warning: all verified


def test_a_package_edited_after_signing_is_refused(release, tmp_path):
    root, _, _ = release
    pkg = tmp_path / "scheduler_basic"
    shutil.copytree(root / "plugins" / "scheduler_basic", pkg)
    (pkg / "policies.py").write_text((pkg / "policies.py").read_text() + "\n# edited after signing\n")
    out = subprocess.run(
        [sys.executable, "-m", "tritium.core.cli", "plugin", "verify", str(pkg),
         "--trust", str(root / "trust")],
        capture_output=True, text=True, cwd=REPO, check=False)
    assert out.returncode == 1 and "policies.py" in out.stderr
