"""The Admin service (hot plug over gRPC) and the seams issue 5 plugs into (verify, sandbox)."""

from __future__ import annotations

import json
import os
from concurrent import futures

import grpc
import pytest
from tritium.plugin_host.admin import AdminService
from tritium.plugin_host.errors import PluginError, PluginIntegrityError
from tritium.plugin_host.supervisor import PluginState, Supervisor
from tritium.protos.tritium.serving.v1 import serving_pb2, serving_pb2_grpc


@pytest.fixture(scope="module")
def admin(tmp_path_factory):
    sup = Supervisor()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    serving_pb2_grpc.add_AdminServicer_to_server(AdminService(sup), server)
    sock = os.path.join(tmp_path_factory.mktemp("admin"), "admin.sock")
    server.add_insecure_port(f"unix:{sock}")
    server.start()
    channel = grpc.insecure_channel(f"unix:{sock}")
    yield sup, serving_pb2_grpc.AdminStub(channel), f"unix:{sock}"
    channel.close()
    server.stop(0)
    sup.close()


def test_hot_plug_replace_and_remove_over_grpc(admin, make_package, tmp_path):
    sup, stub, _ = admin
    m = make_package("toy_backend", name="hot")
    added = stub.AddPlugin(serving_pb2.AddPluginRequest(path=str(m.root)), timeout=30).plugin
    assert (added.name, added.kind, added.state, added.layer) == (
        "hot",
        "backend",
        "ready",
        "admin",
    ) and added.pid
    listed = {p.name: p for p in stub.ListPlugins(serving_pb2.ListPluginsRequest(), timeout=5).plugins}
    assert listed["hot"].pid == added.pid and listed["hot"].manifest_path == str(m.path)

    new = make_package("toy_backend", name="hot")  # same package rebuilt: a new process takes over
    replaced = stub.ReplacePlugin(
        serving_pb2.ReplacePluginRequest(name="hot", path=str(new.root)), timeout=30
    ).plugin
    assert replaced.state == "ready" and replaced.pid != added.pid

    with pytest.raises(grpc.RpcError) as err:
        stub.ReplacePlugin(serving_pb2.ReplacePluginRequest(name="nothere", path=str(new.root)), timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "nothere" in err.value.details()

    removed = stub.RemovePlugin(serving_pb2.RemovePluginRequest(name="hot", drain=True), timeout=30).plugin
    assert removed.state == "stopped"
    assert "hot" not in {
        p.name for p in stub.ListPlugins(serving_pb2.ListPluginsRequest(), timeout=5).plugins
    }


def test_add_of_a_broken_package_is_refused_naming_it(admin, tmp_path):
    _, stub, _ = admin
    (tmp_path / "plugin.toml").write_text('name = "broken"\n')
    with pytest.raises(grpc.RpcError) as err:
        stub.AddPlugin(serving_pb2.AddPluginRequest(path=str(tmp_path)), timeout=30)
    assert (
        err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        and "missing required field" in err.value.details()
    )


def test_verify_hook_runs_before_launch_and_can_refuse(make_package):
    seen = []

    def verify(manifest):
        seen.append(manifest.name)
        if manifest.name == "unsigned":
            raise PluginIntegrityError(manifest.name, "no valid signature")

    with Supervisor(verify=verify) as sup:
        sup.register(make_package("toy_backend", name="unsigned"))
        with pytest.raises(PluginError, match="'unsigned': no valid signature"):
            sup.start("unsigned")
        assert sup.get("unsigned").state == PluginState.FAILED and seen == ["unsigned"]


def test_sandbox_hook_wraps_the_entry_command(make_package, tmp_path):
    marker = tmp_path / "sandboxed"

    def sandbox(manifest, argv, env):
        # A stand-in for issue 5's confinement: a wrapper that records it ran, then execs the plugin.
        wrapper = ["/bin/sh", "-c", f'printf %s "$TRITIUM_SANDBOX" > "{marker}" && exec "$@"', "sandbox"]
        return wrapper + argv, {**env, "TRITIUM_SANDBOX": "test"}

    with Supervisor(sandbox=sandbox) as sup:
        sup.register(make_package("toy_backend", name="boxed"))
        inst = sup.start("boxed")
        assert marker.read_text() == "test"  # the wrapper ran, with the environment the hook gave it
        with open(f"/proc/{inst.pid}/cmdline", "rb") as f:
            assert b"tritium-plugin backend boxed" in f.read()  # and exec'd the plugin itself


def test_hot_plug_an_archive(admin, make_package, tmp_path, monkeypatch):
    import tarfile

    monkeypatch.setenv("TRITIUM_PLUGIN_CACHE", str(tmp_path / "cache"))
    sup, stub, _ = admin
    m = make_package("toy_backend", name="packed")
    archive = tmp_path / "packed.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(m.root, arcname="packed")
    added = stub.AddPlugin(serving_pb2.AddPluginRequest(path=str(archive)), timeout=30).plugin
    assert added.state == "ready" and added.manifest_path.startswith(str(tmp_path / "cache"))
    sup.remove("packed", drain=False)


def test_cli_hot_plug_through_the_admin_service(admin, make_package, capsys):
    from tritium.plugin_host.cli import plugins_main

    _, _, sock = admin
    m = make_package("toy_backend", name="clitoy")
    assert plugins_main(["add", str(m.root), "--admin", sock]) == 0
    assert capsys.readouterr().out.startswith("add: clitoy 0.1.0 (backend) ready pid ")
    assert plugins_main(["list", "--admin", sock, "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["clitoy"]["state"] == "ready" and rows["clitoy"]["layer"] == "admin"
    assert plugins_main(["replace", "clitoy", str(m.root), "--admin", sock]) == 0
    assert "replace: clitoy" in capsys.readouterr().out
    assert plugins_main(["remove", "clitoy", "--admin", sock]) == 0
    assert capsys.readouterr().out.startswith("remove: clitoy 0.1.0 (backend) stopped")
    assert plugins_main(["remove", "clitoy", "--admin", sock]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err
