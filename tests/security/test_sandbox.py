"""The sandbox as a whole: what doctor finds, refusal when a required confinement is missing (at the
hook and in the launcher), the confinements a running plugin has, the environment it gets, and the
builtin cpu backend (numba JIT) running signed and sandboxed."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from security_packages import MISBEHAVING, make_signed_package
from tritium.plugin_host import security_events
from tritium.plugin_host.discovery import BUILTIN_DIR
from tritium.plugin_host.errors import PluginStartError, SandboxError
from tritium.plugin_host.sandbox import landlock
from tritium.plugin_host.sandbox.doctor import kernel_features, process_confinements
from tritium.plugin_host.sandbox.hook import Sandbox, SandboxConfig, chain_hooks
from tritium.plugin_host.sandbox.rlimits import Limits
from tritium.plugin_host.signature import RUN_COPY_MODULE, SignatureVerifier, sign_package
from tritium.plugin_host.supervisor import PluginState, RestartPolicy, Supervisor

MODEL = Path(__file__).resolve().parents[1] / "fixtures" / "bitnetcpp" / "bitnet-b158-tiny.i2_s.gguf"


@pytest.fixture(scope="module")
def features():
    return kernel_features()


@pytest.fixture(scope="module")
def root():
    d = Path(tempfile.mkdtemp(prefix="tritium-sandbox-test-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_kernel_features_are_probed_for_real(features):
    assert features["landlock"]["detail"].startswith(f"ABI {landlock.abi_version()}")
    for name in ("rlimits", "namespaces", "no_new_privs", "landlock", "seccomp"):
        assert features[name]["available"], features[name]
    assert landlock.abi_version() >= 6  # signal scoping is what stops "signal the core"


def test_missing_required_confinement_refuses_the_launch(features, root, keys):
    security_events.reset()
    m = make_signed_package(
        root / "p1", MISBEHAVING, ["toy_backend"], keys.private, name="toy", kind="backend"
    )
    lacking = {**features, "landlock": {"available": False, "detail": "not available (simulated)"}}
    sandbox = Sandbox(SandboxConfig(scratch_root=root / "scratch"), features=lacking)
    with Supervisor(sandbox=sandbox) as sup:
        sup.register(m)
        with pytest.raises(SandboxError, match="required confinement 'landlock' is not available"):
            sup.start("toy")
        assert sup.get("toy").state == PluginState.FAILED
    assert security_events.counts()[("toy", "rejected", "sandbox_missing_landlock")] == 1


def test_launcher_refuses_when_a_required_confinement_fails(features, root, keys):
    """The launcher re-checks for itself: a required step that fails in the plugin's process stops it
    before exec (status 121, one stderr line naming the confinement), and the host reports that."""
    m = make_signed_package(
        root / "p2", MISBEHAVING, ["toy_backend"], keys.private, name="toy", kind="backend"
    )
    # No uid is 4294967295 (-1): the identity step (a root core) or, unprivileged, the namespaces step
    # (no uid map can map it) fails for real inside the launcher.
    cfg = SandboxConfig(scratch_root=root / "scratch", uid=4294967295, gid=4294967295, uid_per_plugin=False)
    step = "identity" if os.geteuid() == 0 else "namespaces"
    with Supervisor(sandbox=Sandbox(cfg, features=features)) as sup:
        sup.register(m)
        with pytest.raises(PluginStartError, match=f"confinement missing, plugin not started: {step}"):
            sup.start("toy")
        assert sup.get("toy").state == PluginState.FAILED


def test_running_plugin_has_its_confinements(features, root, keys):
    m = make_signed_package(
        root / "p4", MISBEHAVING, ["toy_backend"], keys.private, name="toy", kind="backend"
    )
    cfg = SandboxConfig(scratch_root=root / "scratch", limits=Limits(memory_bytes=768 << 20), cpus=(0,))
    marks = []

    def mark(manifest, argv, env):  # noqa: ANN001, ANN202
        marks.append(argv[0])
        return argv, env

    sandbox = Sandbox(cfg, features=features)
    verifier = SignatureVerifier(trust=keys.store("sbx"), copy_root=root / "copies")
    with Supervisor(verify=verifier, sandbox=chain_hooks(mark, sandbox)) as sup:
        sup.register(m)
        inst = sup.start("toy")
        have = process_confinements(inst.pid, sandbox.specs["toy"])
        status = Path(f"/proc/{inst.pid}/status").read_text()
        fds = [os.readlink(p) for p in Path(f"/proc/{inst.pid}/fd").iterdir()]
        assert inst.process.blocked_calls.listening.is_set()  # the core holds the seccomp listener
    # ...and the plugin does not: with it, it could answer its own blocked calls.
    assert not [f for f in fds if "seccomp" in f], fds
    assert have["no_new_privs"] == "yes" and have["seccomp"] == "filter"
    assert have["user_namespace"] == "own" and have["net_namespace"] == "own"
    uid = sandbox.specs["toy"]["uid"]  # its own under a root core, else 65534 inside the namespace
    assert have["uid"].startswith(f"{uid} inside")
    assert have["max data size"] == str(768 << 20)
    assert "landlock" in have["required"]
    assert "Cpus_allowed_list:\t0\n" in status
    if os.geteuid() == 0:
        # A root core: the plugin runs as its own uid/gid outside its namespace too, for real (real,
        # effective, saved and filesystem ids, as the core reads them), and `identity` was required.
        assert uid == sandbox.identity_of("toy")[0] and cfg.uid_base <= uid < cfg.uid_base + cfg.uid_range
        assert f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}\n" in status, status
        assert f"Gid:\t{uid}\t{uid}\t{uid}\t{uid}\n" in status, status
        assert "Groups:\t \n" in status or "Groups:\t\n" in status  # no supplementary groups
        assert have["uid"] == f"{uid} inside its namespace, {uid} outside"
        assert "identity" in have["required"].split(",")
    assert marks and inst.process.manifest.root.parent == root / "copies"  # ran from the verified copy


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root core can give plugins their own uids")
def test_each_plugin_runs_as_its_own_uid(features, root, keys):
    # Two plugins of one root core: distinct uids outside any host user or group, the same one again
    # after a restart; so neither can open the other's 0600 shared-memory segments or scratch.
    cfg = SandboxConfig(scratch_root=root / "scratch-ids")
    sandbox = Sandbox(cfg, features=features)
    verifier = SignatureVerifier(trust=keys.store("ids"), copy_root=root / "copies-ids")
    uids = {}
    with Supervisor(verify=verifier, sandbox=sandbox, policy=RestartPolicy(backoff_initial_s=0.01)) as sup:
        for name in ("toy_a", "toy_b"):
            sup.register(make_signed_package(root / name, MISBEHAVING, ["toy_backend"], keys.private,
                                             name=name, kind="backend"))
            inst = sup.start(name)
            status = Path(f"/proc/{inst.pid}/status").read_text()
            uids[name] = int(next(ln for ln in status.splitlines() if ln.startswith("Uid:")).split()[1])
            assert uids[name] == sandbox.identity_of(name)[0]
            assert (root / "scratch-ids" / name).stat().st_uid == uids[name]
        assert uids["toy_a"] != uids["toy_b"] and os.getuid() not in uids.values()
        assert all(cfg.uid_base <= u < cfg.uid_base + cfg.uid_range for u in uids.values())
        sup.stop("toy_a")
        again = sup.start("toy_a")
        status = Path(f"/proc/{again.pid}/status").read_text()
        assert f"Uid:\t{uids['toy_a']}\t" in status


def test_environment_is_filtered(features, root, keys):
    m = make_signed_package(
        root / "p5", MISBEHAVING, ["toy_backend"], keys.private, name="toy", kind="backend"
    )
    sandbox = Sandbox(SandboxConfig(scratch_root=root / "scratch"), features=features)
    env = {
        "AWS_SECRET_ACCESS_KEY": "s3cr3t",
        "PATH": "/usr/bin",
        "TRITIUM_PLUGIN_NAME": "toy",
        "HOME": "/root",
    }
    argv, penv = sandbox(m, ["/usr/bin/python3", "x.py"], env)
    assert "AWS_SECRET_ACCESS_KEY" not in penv and "s3cr3t" not in " ".join(penv.values())
    assert penv["PATH"] == "/usr/bin" and penv["TRITIUM_PLUGIN_NAME"] == "toy"
    assert penv["HOME"] == str(root / "scratch" / "toy") and penv["NUMBA_CACHE_DIR"].startswith(penv["HOME"])
    assert argv[-2:] == ["/usr/bin/python3", "x.py"] and "tritium.plugin_host.sandbox.exec" in argv


@pytest.mark.slow
def test_builtin_cpu_backend_runs_signed_and_sandboxed(features, keys, tmp_path):
    """The builtin backend, signed at test time with the throwaway key, runs a model step in the box:
    numba's JIT works (PROT_EXEC allowed, cache in scratch) and the model is read through Landlock."""
    from tritium.plugin_host.client import BackendClient
    from tritium.plugin_host.manifest import load_manifest

    # A shared, persistent scratch root keeps numba's cache between runs (cold compile ~20 s).
    scratch = Path(tempfile.gettempdir()) / f"tritium-test-scratch-{os.getuid()}"
    scratch.mkdir(mode=0o755, exist_ok=True)
    pkg = Path(tempfile.mkdtemp(prefix="tritium-builtin-"))
    os.chmod(pkg, 0o755)
    try:
        shutil.copytree(
            BUILTIN_DIR / "backend_cpu", pkg / "backend_cpu", ignore=shutil.ignore_patterns("__pycache__")
        )
        sign_package(pkg / "backend_cpu", keys.private)
        sandbox = Sandbox(
            SandboxConfig(scratch_root=scratch, read_paths=(str(MODEL.parent),)), features=features
        )
        verifier = SignatureVerifier(trust=keys.store("builtin"), copy_root=pkg / "copies")
        with Supervisor(verify=verifier, sandbox=sandbox, policy=RestartPolicy(ready_wait_s=120)) as sup:
            sup.register(load_manifest(pkg / "backend_cpu"))
            inst = sup.start("cpu")
            assert verifier.verified["cpu"] == keys.key_id
            # Imported from the verified copy: the installed tree is not even readable in the box.
            assert RUN_COPY_MODULE in inst.process.manifest.entry
            assert str(BUILTIN_DIR / "backend_cpu") not in sandbox.specs["cpu"]["read_only"]
            client = BackendClient(sup, "cpu", step_timeout_s=300, load_timeout_s=300)
            client.load_model(str(MODEL), threads=1, max_sequences=2)
            logits = np.asarray(client.eval(client.new_sequence(), [1, 2, 3]))
            assert logits.shape[-1] == client.model.n_vocab and np.isfinite(logits).all()
            assert process_confinements(inst.pid)["seccomp"] == "filter"
            client.close()
    finally:
        for p in [pkg, *pkg.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(pkg, ignore_errors=True)
