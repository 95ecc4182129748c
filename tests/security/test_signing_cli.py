"""`tritium plugin keygen|sign|verify|trust|revoke` and `tritium doctor` through the core CLI."""

from __future__ import annotations

import json

from security_packages import MISBEHAVING, make_signed_package
from tritium.core.cli import main


def test_keygen_sign_verify_revoke(tmp_path, capsys):
    assert main(["plugin", "keygen", "--out", str(tmp_path / "k")]) == 0
    kid = capsys.readouterr().out.split()[2]
    key, pub = tmp_path / "k" / f"{kid}.key", tmp_path / "k" / f"{kid}.pub"
    assert (key.stat().st_mode & 0o777) == 0o600
    pkg = make_signed_package(
        tmp_path / "pkg", MISBEHAVING, ["toy_backend"], None, name="toy", kind="backend"
    ).root
    trust = str(tmp_path / "trust")

    assert main(["plugin", "verify", str(pkg), "--trust", trust]) == 1
    assert "missing signature" in capsys.readouterr().err
    assert main(["plugin", "sign", str(pkg), "--key", str(key)]) == 0
    assert main(["plugin", "verify", str(pkg), "--trust", trust]) == 1
    assert f"signed by unknown key {kid}" in capsys.readouterr().err
    assert main(["plugin", "trust", str(pub), "--trust", trust]) == 0
    capsys.readouterr()
    assert main(["plugin", "verify", str(pkg), "--trust", trust]) == 0
    assert f"signed by key {kid}" in capsys.readouterr().out

    (pkg / "plugin_main.py").write_text("tampered")
    assert main(["plugin", "verify", str(pkg), "--trust", trust]) == 1
    err = capsys.readouterr().err
    assert "plugin 'toy'" in err and "plugin_main.py" in err and "changed after signing" in err

    assert main(["plugin", "revoke", kid, "--trust", trust]) == 0
    assert main(["plugin", "verify", str(pkg), "--trust", trust]) == 1
    assert f"revoked key {kid}" in capsys.readouterr().err


def test_doctor_json(capsys):
    status = main(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == (1 if report["missing"] else 0)
    assert report["kernel"]["landlock"]["detail"].startswith("ABI ")
    assert set(report["required"]) <= set(report["kernel"])
