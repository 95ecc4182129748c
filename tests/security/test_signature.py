"""Signed packages: every way a package can differ from what was signed is a SignatureError that names
the plugin, the file and the reason; a verified package runs from a private read-only copy."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from security_packages import MISBEHAVING, make_signed_package
from tritium.plugin_host import security_events
from tritium.plugin_host.errors import SignatureError
from tritium.plugin_host.manifest import load_manifest
from tritium.plugin_host.signature import (
    DOMAIN,
    SignatureVerifier,
    canonical_json,
    verified_copy,
    verify_package,
)
from tritium.sdk.packaging import SIGNATURE_NAME, rehash


@pytest.fixture
def pkg(tmp_path, keys):
    return make_signed_package(
        tmp_path / "pkg", MISBEHAVING, ["toy_backend"], keys.private, name="toy", kind="backend"
    )


def _raises(match: str, fn, *args, **kw) -> SignatureError:
    with pytest.raises(SignatureError, match=match) as info:
        fn(*args, **kw)
    assert info.value.plugin == "toy"
    return info.value


def test_signed_package_verifies(pkg, keys):
    verified = verify_package(pkg.root, keys.store("ok"))
    assert verified.key_id == keys.key_id
    assert set(verified.statement["files"]) == {"plugin_main.py"}
    assert verified.statement["files"]["plugin_main.py"]["size"] == os.path.getsize(
        pkg.root / "plugin_main.py"
    )


def test_changed_file(pkg, keys):
    with open(pkg.root / "plugin_main.py", "a") as f:
        f.write("\n# evil\n")
    err = _raises("changed after signing", verify_package, pkg.root, keys.store("changed"))
    assert "plugin_main.py" in str(err)
    # Rehashing the manifest does not help: the manifest then differs from the signed one.
    rehash(pkg.root)
    _raises(
        r"plugin.toml.*differs from the signed one \(manifest edited\)",
        verify_package,
        pkg.root,
        keys.store("c2"),
    )


def test_added_file(pkg, keys):
    (pkg.root / "extra.py").write_text("print('hi')\n")
    err = _raises(r"not covered by the signature \(added\)", verify_package, pkg.root, keys.store("added"))
    assert "extra.py" in str(err)


def test_removed_file(tmp_path, keys):
    root = tmp_path / "two"
    root.mkdir()
    m = make_signed_package(root / "p", MISBEHAVING, ["toy_backend"], None, name="toy", kind="backend")
    (m.root / "helper.py").write_text("X = 1\n")
    rehash(m.root)
    from tritium.plugin_host.signature import sign_package

    sign_package(m.root, keys.private)
    (m.root / "helper.py").unlink()
    err = _raises(r"signed file is missing \(removed\)", verify_package, m.root, keys.store("removed"))
    assert "helper.py" in str(err)


def test_edited_manifest(pkg, keys):
    text = (pkg.root / "plugin.toml").read_text().replace('"toy_backend"', '"scheduler_hang"')
    (pkg.root / "plugin.toml").write_text(text)
    _raises(r"plugin.toml: field 'entry'.*manifest edited", verify_package, pkg.root, keys.store("edited"))


def test_missing_signature(pkg, keys):
    (pkg.root / SIGNATURE_NAME).unlink()
    _raises(r"plugin.sig: missing signature", verify_package, pkg.root, keys.store("missing"))


def test_unknown_key(tmp_path, keys):
    m = make_signed_package(
        tmp_path / "p", MISBEHAVING, ["toy_backend"], keys.other, name="toy", kind="backend"
    )
    err = _raises("signed by unknown key", verify_package, m.root, keys.store("unknown"))
    assert keys.other_id in str(err)


def test_revoked_key(pkg, keys):
    store = keys.store("revoked")
    verify_package(pkg.root, store)
    store.revoke(keys.key_id)
    _raises(f"signed by revoked key {keys.key_id}", verify_package, pkg.root, store)


def test_rollback(tmp_path, keys):
    store = keys.store("rollback")
    new = make_signed_package(
        tmp_path / "new", MISBEHAVING, ["toy_backend"], keys.private, name="toy", version="0.2.0"
    )
    old = make_signed_package(
        tmp_path / "old", MISBEHAVING, ["toy_backend"], keys.private, name="toy", version="0.1.0"
    )
    verify_package(old.root, store)  # 0.1.0 first: fine
    verify_package(new.root, store)  # upgrade: fine, remembered
    _raises(r"version 0.1.0 is older than 0.2.0.*rollback", verify_package, old.root, store)
    assert store.highest_version("toy") == "0.2.0"


def test_domain_prefix_prevents_replay(pkg, keys):
    """A signature by the trusted key over the same statement but without the domain prefix (as another
    tool using the key might produce) is refused, and so is one with another domain."""
    sig_path = pkg.root / SIGNATURE_NAME
    doc = json.loads(sig_path.read_text())
    for message in (
        canonical_json(doc["statement"]),
        b"other purpose v1\x00" + canonical_json(doc["statement"]),
    ):
        doc["signature"] = base64.b64encode(keys.private.sign(message)).decode()
        sig_path.write_text(json.dumps(doc))
        _raises("does not verify", verify_package, pkg.root, keys.store("replay"))
    doc["signature"] = base64.b64encode(keys.private.sign(DOMAIN + canonical_json(doc["statement"]))).decode()
    sig_path.write_text(json.dumps(doc))
    verify_package(pkg.root, keys.store("replay-ok"))


def test_signature_file_statement_altered(pkg, keys):
    sig_path = pkg.root / SIGNATURE_NAME
    doc = json.loads(sig_path.read_text())
    doc["statement"]["version"] = "9.9.9"
    sig_path.write_text(json.dumps(doc))
    _raises("does not verify", verify_package, pkg.root, keys.store("altered"))


def test_verified_copy_is_private_and_read_only(pkg, keys, tmp_path):
    verified = verified_copy(pkg, keys.store("copy"), tmp_path / "copies")
    copy = verified.manifest
    assert copy.root != pkg.root and copy.root.parent == tmp_path / "copies"
    assert (copy.root / "plugin_main.py").read_bytes() == (pkg.root / "plugin_main.py").read_bytes()
    for p in [copy.root, *copy.root.rglob("*")]:
        assert not os.stat(p).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), p
    # Swapping the original after verification does not change what runs: the copy is what launches.
    (pkg.root / "plugin_main.py").write_text("evil")
    assert (copy.root / "plugin_main.py").read_text() != "evil"
    # And the next launch verifies the swapped original again, and refuses it.
    _raises(
        "changed after signing",
        verified_copy,
        load_manifest(pkg.root),
        keys.store("copy"),
        tmp_path / "copies",
    )


def test_verifier_counts_rejections_and_dev_switch(pkg, keys, tmp_path):
    security_events.reset()
    (pkg.root / SIGNATURE_NAME).unlink()
    strict = SignatureVerifier(trust=keys.store("hook"), copy_root=tmp_path / "c", allow_unsigned=False)
    with pytest.raises(SignatureError, match="missing signature"):
        strict(pkg)
    assert security_events.counts()[("toy", "rejected", "unsigned")] == 1
    dev = SignatureVerifier(trust=keys.store("hook"), copy_root=tmp_path / "c", allow_unsigned=True)
    assert dev(pkg) == pkg  # runs from its own folder, unverified
    assert security_events.counts()[("toy", "unsigned_allowed", "unsigned")] == 1
    assert dev.verified["toy"] == "UNVERIFIED"


def test_every_launch_is_verified_restart_included(tmp_path, keys):
    """A file swapped while the plugin runs is caught when it is restarted: the restart is refused,
    the plugin fails (no unverified code runs), and the refusal is counted."""
    from tritium.plugin_host.supervisor import PluginState, RestartPolicy, Supervisor

    security_events.reset()
    m = make_signed_package(
        tmp_path / "p", MISBEHAVING, ["toy_backend"], keys.private, name="toy", kind="backend"
    )
    verifier = SignatureVerifier(
        trust=keys.store("restart"), copy_root=tmp_path / "copies", allow_unsigned=False
    )
    policy = RestartPolicy(backoff_initial_s=0.01, max_crashes=3, health_interval_s=0)
    with Supervisor(verify=verifier, policy=policy) as sup:
        sup.register(m)
        first = sup.start("toy")
        with open(m.root / "plugin_main.py", "a") as f:
            f.write("\n# swapped while running\n")
        sup.fault(first, "test kill")
        assert sup.wait_for("toy", lambda mp: mp.state == PluginState.FAILED, timeout=20)
    assert security_events.counts().get(("toy", "rejected", "file_changed"), 0) >= 1
