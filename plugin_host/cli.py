"""`tritium plugins ...`: list, check, package and hot-plug plugins.

    tritium plugins list [--json] [--start]       each plugin's layer, version, state, pid, restarts
    tritium plugins list --admin ADDR [--json]    the same, live, from a running server
    tritium plugins verify [NAME...]              manifest, file hashes and version fit, without starting
    tritium plugins rehash DIR...                 refresh a package's [files] table
    tritium plugins add PATH --admin ADDR         hot-plug a package (folder or archive) into a server
    tritium plugins replace NAME PATH --admin ADDR   hot-swap: requests in flight finish on the old one
    tritium plugins remove NAME --admin ADDR [--no-drain]

Without --admin, `list` shows what discovery resolved here (state discovered or failed); with --start,
each plugin is started, health-checked and stopped, so the listing shows whether it reaches ready.
ADDR is the server's Admin gRPC address (e.g. `unix:/run/tritium/admin.sock` or `localhost:50052`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import grpc
from tritium.protos.tritium.serving.v1 import serving_pb2, serving_pb2_grpc
from tritium.sdk import packaging

from .admin import status_row
from .confined import confined_supervisor
from .discovery import discover
from .errors import PluginError
from .manifest import verify_files
from .supervisor import Supervisor
from .versioning import check_manifest

COLUMNS = ("name", "kind", "version", "layer", "state", "pid", "restarts", "manifest_path", "error")


def _rows(start: bool) -> list[dict[str, object]]:
    found = discover()
    rows: list[dict[str, object]] = []
    # --start launches them as production does: signature checked, sandboxed
    sup = confined_supervisor() if start else Supervisor()
    try:
        for d in found.plugins.values():
            if d.manifest is None:
                rows.append(
                    {
                        "name": d.name,
                        "kind": "?",
                        "version": "?",
                        "layer": d.layer,
                        "state": "failed",
                        "pid": 0,
                        "restarts": 0,
                        "manifest_path": str(d.path),
                        "error": d.error,
                    }
                )
                continue
            sup.register(d.manifest, d.layer)
            if start:
                try:
                    sup.start(d.name)
                except PluginError:
                    pass  # the row shows state failed and why
        rows += [r for r in sup.status()]
        for r in rows:
            if not start and r["state"] == "discovered":
                try:
                    check_manifest(sup.get(r["name"]).manifest)
                    verify_files(sup.get(r["name"]).manifest)
                except PluginError as exc:
                    r["state"], r["error"] = "failed", exc.reason
    finally:
        sup.close()
    return sorted(rows, key=lambda r: (str(r["kind"]), str(r["name"])))


def _print_table(rows: list[dict[str, object]]) -> None:
    shown = COLUMNS[:-2]
    table = [[str(r[c] if r[c] != 0 or c == "restarts" else "-") for c in shown] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) if table else len(c) for i, c in enumerate(shown)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(shown, widths, strict=True)).rstrip())
    for r, t in zip(rows, table, strict=True):
        print("  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)).rstrip())
        print(f"    {r['manifest_path']}")
        if r["error"]:
            print(f"    error: {r['error']}")


def plugins_main(argv: list[str] | None = None) -> int:
    """Entry of `tritium plugins`; returns the exit status (1 if any plugin is failed)."""
    parser = argparse.ArgumentParser(prog="tritium plugins", description="List, check and package plugins.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="each plugin's layer, version, state, pid, restarts")
    p_list.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p_list.add_argument("--start", action="store_true", help="start, health-check and stop each plugin")
    p_verify = sub.add_parser("verify", help="check manifests, file hashes and versions")
    p_verify.add_argument("names", nargs="*")
    p_rehash = sub.add_parser("rehash", help="refresh a package's [files] table")
    p_rehash.add_argument("dirs", nargs="+")
    p_list.add_argument("-v", "--verbose", action="store_true", help="log discovery decisions")
    p_list.add_argument("--admin", help="Admin gRPC address of a running server: list its live plugins")
    p_add = sub.add_parser("add", help="hot-plug a package into a running server")
    p_add.add_argument("path")
    p_replace = sub.add_parser("replace", help="hot-swap a running server's plugin for a package")
    p_replace.add_argument("name")
    p_replace.add_argument("path")
    p_remove = sub.add_parser("remove", help="drain and stop a running server's plugin")
    p_remove.add_argument("name")
    p_remove.add_argument("--no-drain", action="store_true", help="cancel calls in flight")
    for p in (p_add, p_replace, p_remove):
        p.add_argument("--admin", required=True, help="Admin gRPC address of the running server")
    args = parser.parse_args(argv)

    if args.command == "rehash":
        return packaging.main(args.dirs)
    if args.command in ("add", "replace", "remove") or getattr(args, "admin", None):
        return _admin_command(args)
    if getattr(args, "verbose", False):
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    if args.command == "list":
        rows = _rows(args.start)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            _print_table(rows)
        return 1 if any(r["state"] == "failed" for r in rows) else 0
    found = discover()
    names = args.names or sorted(found.plugins)
    status = 0
    for name in names:
        try:
            m = found.require(name)
            check_manifest(m)
            verify_files(m)
            print(f"ok      {name} {m.version} ({m.kind}) {m.path}")
        except PluginError as exc:
            print(f"FAILED  {name}: {exc.reason}")
            status = 1
    return status


def _admin_command(args: argparse.Namespace) -> int:
    """Run list/add/replace/remove against a server's Admin service; errors print the server's reason."""
    with grpc.insecure_channel(args.admin) as channel:
        stub = serving_pb2_grpc.AdminStub(channel)
        try:
            if args.command == "list":
                rows = [
                    status_row(p)
                    for p in stub.ListPlugins(serving_pb2.ListPluginsRequest(), timeout=10).plugins
                ]
                if args.json:
                    print(json.dumps(rows, indent=2))
                else:
                    _print_table(rows)
                return 1 if any(r["state"] == "failed" for r in rows) else 0
            if args.command == "add":
                req = serving_pb2.AddPluginRequest(path=os.path.abspath(args.path))
                changed = stub.AddPlugin(req, timeout=120).plugin
            elif args.command == "replace":
                req = serving_pb2.ReplacePluginRequest(name=args.name, path=os.path.abspath(args.path))
                changed = stub.ReplacePlugin(req, timeout=120).plugin
            else:
                req = serving_pb2.RemovePluginRequest(name=args.name, drain=not args.no_drain)
                changed = stub.RemovePlugin(req, timeout=600).plugin
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    row = status_row(changed)
    print(
        f"{args.command}: {row['name']} {row['version']} ({row['kind']}) {row['state']}"
        + (f" pid {row['pid']}" if row["pid"] else "")
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `tritium plugins ...` to the core CLI (the `register(subparsers)` convention of core/cli)."""
    p = subparsers.add_parser("plugins", help="list, check and package plugins", add_help=False)
    p.add_argument("plugins_args", nargs=argparse.REMAINDER)
    p.set_defaults(run=lambda args: plugins_main(args.plugins_args))


if __name__ == "__main__":
    raise SystemExit(plugins_main())
