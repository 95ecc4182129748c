"""`tritium doctor`: which confinements this kernel offers, and which each plugin gets.

    tritium doctor            the kernel's confinements (probed for real), and the sandbox defaults
    tritium doctor --start    also start each discovered plugin (verified, sandboxed), show what it
                              has (read from /proc), and stop it
    tritium doctor --json

Exit status 1 when a confinement the default configuration requires is missing.
"""

from __future__ import annotations

import argparse
import json

from .errors import PluginError
from .sandbox.doctor import kernel_features, process_confinements
from .sandbox.hook import Sandbox, SandboxConfig


def _plugins(sandbox: Sandbox, allow_unsigned: bool) -> list[dict]:
    from .discovery import discover
    from .signature import SignatureVerifier
    from .supervisor import Supervisor

    verifier = SignatureVerifier(allow_unsigned=True if allow_unsigned else None)
    rows = []
    with Supervisor(verify=verifier, sandbox=sandbox) as sup:
        found = discover()
        sup.register_discovered(found)
        for name in sorted(found.plugins):
            row: dict = {"plugin": name}
            try:
                inst = sup.start(name)
                row.update(process_confinements(inst.pid, sandbox.specs.get(name)))
                row["signature"] = verifier.verified.get(name, "?")
                sup.stop(name, drain=False, deadline_s=1.0)
            except PluginError as exc:
                row["error"] = exc.reason
            rows.append(row)
    return rows


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", action="store_true", help="start each plugin and show its confinements")
    parser.add_argument(
        "--allow-unsigned", action="store_true", help="(development) start unsigned plugins too"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def doctor_main(argv: list[str] | None = None) -> int:
    """Entry of `tritium doctor`; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="tritium doctor", description="Sandbox confinements available here."
    )
    _add_options(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Print the report for parsed options (start, allow_unsigned, json); returns the exit status."""
    features = kernel_features()
    config = SandboxConfig()
    missing = [n for n in config.required if not features.get(n, {}).get("available")]
    plugins = _plugins(Sandbox(config, features=features), args.allow_unsigned) if args.start else []
    if args.json:
        print(json.dumps({"kernel": features, "required": list(config.required), "missing": missing,
                          "plugins": plugins}, indent=2))  # fmt: skip
        return 1 if missing else 0
    print("confinement    available  required  detail")
    for name, f in features.items():
        req = "yes" if name in config.required else "-"
        print(f"{name:<14} {'yes' if f['available'] else 'NO':<10} {req:<9} {f['detail']}")
    for row in plugins:
        print(f"\nplugin {row.pop('plugin')}:")
        for k, v in row.items():
            print(f"  {k:<16} {v}")
    if missing:
        print(f"\nMISSING required confinements: {', '.join(missing)} — plugins will not start")
    return 1 if missing else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `tritium doctor` to the core CLI."""
    p = subparsers.add_parser("doctor", help="sandbox confinements this kernel offers")
    _add_options(p)
    p.set_defaults(run=run)


if __name__ == "__main__":
    raise SystemExit(doctor_main())
