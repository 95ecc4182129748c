"""The private mount namespace of a root launcher: paths behind a folder others cannot traverse
become reachable by uid 65534 at their own paths, read-only, and nothing else of that folder does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from tritium.plugin_host.sandbox.private_mounts import blocker

# Runs as root in a fresh process (unshare(CLONE_NEWNS) needs a single thread): expose, drop, probe.
_CHILD = textwrap.dedent(
    """
    import json, os, sys
    from tritium.plugin_host.sandbox import namespaces, private_mounts
    base = sys.argv[1]
    covered = private_mounts.expose([base + "/home/runtime"], [base + "/home/scratch"])
    namespaces.drop_to(65534, 65534)
    out = {"covered": covered}
    def probe(label, fn):
        try:
            out[label] = "ok: " + str(fn())
        except OSError as exc:
            out[label] = type(exc).__name__
    probe("read runtime", lambda: open(base + "/home/runtime/lib.py").read())
    probe("write runtime", lambda: open(base + "/home/runtime/x", "w"))
    probe("write scratch", lambda: open(base + "/home/scratch/x", "w").write("1"))
    probe("list home", lambda: os.listdir(base + "/home"))
    probe("read secret", lambda: open(base + "/home/secret").read())
    print(json.dumps(out))
    """
)


@pytest.fixture()
def home():
    base = Path(tempfile.mkdtemp(prefix="tritium-mounts-"))
    os.chmod(base, 0o755)
    (base / "home" / "runtime").mkdir(parents=True)
    (base / "home" / "runtime" / "lib.py").write_text("code")
    (base / "home" / "scratch").mkdir()
    if os.geteuid() == 0:
        os.chown(base / "home" / "scratch", 65534, 65534)
    (base / "home" / "secret").write_text("s3cr3t")
    os.chmod(base / "home", 0o700)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_blocker_is_the_top_most_folder_others_cannot_traverse(home):
    assert blocker(str(home / "home" / "runtime" / "lib.py")) == home / "home"
    assert blocker(str(home)) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="exposing paths to another uid needs a root launcher")
def test_exposed_paths_are_reachable_by_nobody_and_nothing_else_is(home):
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(home)], capture_output=True, text=True, check=True, timeout=30
    )
    got = json.loads(out.stdout)
    assert got["covered"] == [str(home / "home")]
    assert got["read runtime"] == "ok: code"
    assert got["write runtime"] in ("OSError", "PermissionError")  # read-only bind mount
    assert got["write scratch"] == "ok: 1"
    assert got["list home"] == "PermissionError"  # the tmpfs is 0711: traversable, not listable
    assert got["read secret"] == "FileNotFoundError"  # not there at all
    assert (home / "home" / "secret").read_text() == "s3cr3t"  # the host's tree is untouched
