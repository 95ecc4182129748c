"""`tritium plugins list/verify` (plugins_main)."""

from __future__ import annotations

import json

from tritium.plugin_host.cli import plugins_main


def test_list_shows_layers_versions_and_failures(tmp_path, monkeypatch, capsys):
    broken = tmp_path / "user" / "basic"
    broken.mkdir(parents=True)
    (broken / "plugin.toml").write_text('name = "basic"\n')
    monkeypatch.setenv("TRITIUM_USER_PLUGIN_DIR", str(tmp_path / "user"))
    monkeypatch.setenv("TRITIUM_SYSTEM_PLUGIN_DIR", str(tmp_path / "none"))
    monkeypatch.delenv("TRITIUM_PLUGIN_PATH", raising=False)
    assert plugins_main(["list", "--json"]) == 1
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert (
        rows["cpu"]["layer"] == "builtin"
        and rows["cpu"]["state"] == "discovered"
        and rows["cpu"]["version"] == "0.1.0"
    )
    # The user layer's broken copy of `basic` wins over the builtin one and is reported, not skipped.
    assert rows["basic"]["layer"] == "user" and rows["basic"]["state"] == "failed"
    assert "missing required field" in rows["basic"]["error"]
    assert plugins_main(["list"]) == 1
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["NAME", "KIND", "VERSION", "LAYER", "STATE", "PID", "RESTARTS"]
    assert "error: " in table
    assert plugins_main(["verify", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("ok      cpu 0.1.0 (backend)")


def test_register_adds_the_plugins_subcommand(capsys):
    import argparse

    from tritium.plugin_host.cli import register

    parser = argparse.ArgumentParser(prog="tritium")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["plugins", "verify", "basic"])
    assert args.run(args) == 0
    assert "ok      basic" in capsys.readouterr().out
