"""`tritium plugin keygen|sign|verify|trust|revoke`: Ed25519 keys and package signatures.

    tritium plugin keygen [--out DIR]            new key pair: DIR/<key id>.key (0600) and .pub
    tritium plugin sign PKG --key KEY            write PKG/plugin.sig (run `tritium plugins rehash PKG` first)
    tritium plugin verify PKG [--trust DIR]      check PKG's signature against the trust store
    tritium plugin trust PUB [--trust DIR]       add a public key to the (user) trust store
    tritium plugin revoke KEY_ID [--trust DIR]   add a key id to the (user) revocation list

Without --trust the default trust store is used (release, system and user layers; see
trust_store.py). Exit status 1 when verification fails, with the reason on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import PluginError
from .signature import sign_package, verify_package
from .trust_store import TrustStore, generate_keypair, load_private_key


def _store(args: argparse.Namespace) -> TrustStore:
    return TrustStore.at(args.trust) if args.trust else TrustStore.default()


def plugin_main(argv: list[str] | None = None) -> int:
    """Entry of `tritium plugin`; returns the exit status."""
    parser = argparse.ArgumentParser(prog="tritium plugin", description="Sign and verify plugin packages.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_gen = sub.add_parser("keygen", help="make an Ed25519 key pair")
    p_gen.add_argument("--out", default=".", help="folder for <key id>.key and <key id>.pub")
    p_sign = sub.add_parser("sign", help="sign a package folder")
    p_sign.add_argument("package")
    p_sign.add_argument("--key", required=True, help="the private key file (PEM)")
    p_verify = sub.add_parser("verify", help="verify a package folder's signature")
    p_verify.add_argument("package")
    p_trust = sub.add_parser("trust", help="trust a public key")
    p_trust.add_argument("public_key")
    p_revoke = sub.add_parser("revoke", help="revoke a key id")
    p_revoke.add_argument("key_id")
    for p in (p_verify, p_trust, p_revoke):
        p.add_argument("--trust", help="a trust folder to use instead of the default layers")
    args = parser.parse_args(argv)

    try:
        if args.command == "keygen":
            kid, key_path, pub_path = generate_keypair(args.out)
            print(f"key id {kid}\nprivate key {key_path} (keep it secret)\npublic key  {pub_path}")
        elif args.command == "sign":
            out = sign_package(args.package, load_private_key(args.key))
            print(f"signed {args.package}: {out}")
        elif args.command == "verify":
            v = verify_package(Path(args.package), _store(args), record=False)
            print(
                f"ok  {v.manifest.name} {v.manifest.version} ({v.manifest.kind}): "
                f"{len(v.statement['files'])} files, signed by key {v.key_id}"
            )
        elif args.command == "trust":
            print(f"trusted key {_store(args).add_key(args.public_key)}")
        elif args.command == "revoke":
            print(f"revoked key {args.key_id} in {_store(args).revoke(args.key_id)}")
    except PluginError as exc:
        print(f"FAILED  {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `tritium plugin ...` to the core CLI."""
    p = subparsers.add_parser("plugin", help="sign and verify plugin packages", add_help=False)
    p.add_argument("plugin_args", nargs=argparse.REMAINDER)
    p.set_defaults(run=lambda args: plugin_main(args.plugin_args))


if __name__ == "__main__":
    raise SystemExit(plugin_main())
