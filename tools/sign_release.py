#!/usr/bin/env python3
"""Sign the builtin plugin packages of a release build tree with the release key (trust/README.md).

    python tools/sign_release.py --key /secure/offline/<id>.key [--plugins BUILD/plugins] [--trust DIR]

For every package folder under --plugins (default: this checkout's plugins/): refresh the manifest's
[files] table, write plugin.sig with the key, then verify the package against the release trust
folder (--trust, default trust/ of this checkout) exactly as a launch would. Exits 1, naming the
package and the reason, when any step fails: a release never ships a package its own trust folder
would refuse. The signatures are build outputs of the release tree, not commits of the repository.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sign_release(plugins: Path, key_path: Path, trust: Path) -> list[str]:
    """Rehash, sign and verify every package under `plugins`; returns one line per package."""
    from tritium.plugin_host.signature import sign_package, verify_package
    from tritium.plugin_host.trust_store import TrustStore, load_private_key
    from tritium.sdk.packaging import MANIFEST_NAME, rehash

    key = load_private_key(key_path)
    store = TrustStore({"release": trust}, trust / "versions.json")
    lines = []
    packages = sorted(p.parent for p in plugins.glob(f"*/{MANIFEST_NAME}"))
    if not packages:
        raise SystemExit(f"error: no plugin packages ({MANIFEST_NAME}) under {plugins}")
    for pkg in packages:
        rehash(pkg)
        sign_package(pkg, key)
        v = verify_package(pkg, store, record=False)
        lines.append(f"signed {v.manifest.name} {v.manifest.version} ({v.manifest.kind}): "
                     f"{len(v.statement['files'])} files, key {v.key_id}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--key", type=Path, required=True, help="the release private key (PEM)")
    parser.add_argument("--plugins", type=Path, default=REPO / "plugins", help="the packages' parent folder")
    parser.add_argument("--trust", type=Path, default=REPO / "trust", help="the release trust folder")
    args = parser.parse_args(argv)
    from tritium.plugin_host.errors import PluginError

    try:
        for line in sign_release(args.plugins, args.key, args.trust):
            print(line)
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
