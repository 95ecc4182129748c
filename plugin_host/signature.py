"""Ed25519 signatures of plugin packages, and the verify-before-launch hook that runs a private,
read-only copy of exactly what it verified.

What is signed (the *statement*): a canonical JSON object (sorted keys, no spaces, UTF-8) holding the
manifest's name, kind, version, api, core range, entry, description and fallback, every file's sha256
and size, and the signer's key id. The signed bytes are `DOMAIN + statement`: the fixed domain prefix
means a signature made by the same key for any other purpose (or another format version) never
verifies as a package signature.

`plugin.sig` (next to plugin.toml, JSON): {"format": 1, "key_id": ..., "statement": {...},
"signature": base64}. Verification checks, in order: the file exists; the key is known and not
revoked; the signature over DOMAIN + canonical(statement); the statement against plugin.toml
(field by field); the files against the statement (sha256 and size, none added, none missing); and the
version against the highest already seen (rollback). Every failure is a SignatureError naming the
plugin, the file and the reason.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tritium.sdk.packaging import MANIFEST_NAME, SIGNATURE_NAME, package_files

from . import security_events
from .errors import ManifestError, SignatureError
from .manifest import Manifest, load_manifest
from .trust_store import TrustStore, key_id

log = logging.getLogger("tritium.plugin_host.signature")

DOMAIN = b"tritium plugin package signature v1\x00"
FORMAT = 1
# Set to 1 to run unsigned (or badly signed) plugins: development only, logged loudly at each launch.
DEV_SWITCH = "TRITIUM_ALLOW_UNSIGNED_PLUGINS"
_CHUNK = 1 << 20


def canonical_json(obj: object) -> bytes:
    """The canonical bytes of a JSON value: sorted keys, no insignificant space, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _file_digest(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def manifest_fields(manifest: Manifest) -> dict[str, object]:
    """The manifest's signed fields (everything but [files])."""
    return {
        "name": manifest.name,
        "kind": manifest.kind,
        "version": manifest.version,
        "api": manifest.api,
        "core": str(manifest.core),
        "entry": list(manifest.entry),
        "description": manifest.description,
        "fallback": manifest.fallback,
    }


def build_statement(manifest: Manifest, kid: str) -> dict[str, object]:
    """The statement a signature over `manifest`'s package covers; file sizes and hashes are read from
    the package folder (which must match the manifest's [files])."""
    files = {}
    for rel in package_files(manifest.root):
        digest, size = _file_digest(manifest.root / rel)
        files[rel] = {"sha256": digest, "size": size}
    return {"format": FORMAT, **manifest_fields(manifest), "files": files, "key_id": kid}


def sign_package(root: Path | str, private_key: Ed25519PrivateKey) -> Path:
    """Sign the package in `root` (its manifest must list its files: run packaging first); writes and
    returns `root`/plugin.sig."""
    manifest = load_manifest(root)
    kid = key_id(private_key.public_key())
    statement = build_statement(manifest, kid)
    listed = set(manifest.files)
    present = set(statement["files"])
    if listed != present or any(statement["files"][r]["sha256"] != manifest.files[r] for r in listed):
        raise SignatureError(
            manifest.name,
            f"{manifest.path}: [files] does not match the folder (rehash it first: "
            f"python -m tritium.sdk.packaging {manifest.root})",
        )
    sig = private_key.sign(DOMAIN + canonical_json(statement))
    out = manifest.root / SIGNATURE_NAME
    doc = {
        "format": FORMAT,
        "key_id": kid,
        "statement": statement,
        "signature": base64.b64encode(sig).decode(),
    }
    out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return out


@dataclass(frozen=True)
class VerifiedPackage:
    """A package whose signature checked out: its manifest, the signer and the signed statement."""

    manifest: Manifest
    key_id: str
    statement: dict


def _read_signature(manifest: Manifest, sig_bytes: bytes | None) -> tuple[str, dict, bytes]:
    sig_path = manifest.root / SIGNATURE_NAME
    if sig_bytes is None:
        raise SignatureError(manifest.name, f"{sig_path}: missing signature (the package is unsigned)")
    try:
        doc = json.loads(sig_bytes.decode("utf-8"))
        kid = doc["key_id"]
        statement = doc["statement"]
        signature = base64.b64decode(doc["signature"], validate=True)
        if doc.get("format") != FORMAT or not isinstance(kid, str) or not isinstance(statement, dict):
            raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT}")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise SignatureError(manifest.name, f"{sig_path}: malformed signature file ({exc})") from None
    return kid, statement, signature


def check_statement(manifest: Manifest, sig_bytes: bytes | None, trust: TrustStore) -> tuple[str, dict]:
    """Check the signature file's bytes against the trust store and `manifest`'s fields (not the files).
    Returns (key id, statement); SignatureError names the plugin, the file and the reason."""
    sig_path = manifest.root / SIGNATURE_NAME
    kid, statement, signature = _read_signature(manifest, sig_bytes)
    revoked = trust.revoked()
    if kid in revoked:
        raise SignatureError(
            manifest.name, f"{sig_path}: signed by revoked key {kid} (listed in {revoked[kid]})"
        )
    trusted = trust.key(kid)
    if trusted is None:
        raise SignatureError(
            manifest.name, f"{sig_path}: signed by unknown key {kid} (not in the trust store)"
        )
    try:
        trusted.public_key.verify(signature, DOMAIN + canonical_json(statement))
    except InvalidSignature:
        raise SignatureError(
            manifest.name,
            f"{sig_path}: the signature does not verify with key {kid} (the signature file was altered, "
            "or the signature was made for another purpose)",
        ) from None
    if statement.get("key_id") != kid or statement.get("format") != FORMAT:
        raise SignatureError(
            manifest.name, f"{sig_path}: the statement names key {statement.get('key_id')!r}"
        )
    for key, value in manifest_fields(manifest).items():
        if statement.get(key) != value:
            raise SignatureError(
                manifest.name,
                f"{manifest.path}: field {key!r} is {value!r} but the signed manifest says "
                f"{statement.get(key)!r} (manifest edited after signing)",
            )
    signed_files = statement.get("files")
    if not isinstance(signed_files, dict):
        raise SignatureError(manifest.name, f"{sig_path}: the statement has no files table")
    for rel, entry in signed_files.items():
        if manifest.files.get(rel) != entry.get("sha256"):
            raise SignatureError(
                manifest.name,
                f"{manifest.path}: [files] entry {rel!r} differs from the signed one (manifest edited)",
            )
    extra = sorted(set(manifest.files) - set(signed_files))
    if extra:
        raise SignatureError(manifest.name, f"{manifest.path}: [files] lists unsigned files {extra}")
    return kid, statement


def _check_files(manifest: Manifest, root: Path, signed: dict) -> None:
    present = set(package_files(root))
    for rel in sorted(set(signed) - present):
        raise SignatureError(manifest.name, f"{root / rel}: signed file is missing (removed)")
    for rel in sorted(present - set(signed)):
        raise SignatureError(manifest.name, f"{root / rel}: file is not covered by the signature (added)")
    for rel in sorted(signed):
        digest, size = _file_digest(root / rel)
        want = signed[rel]
        if (digest, size) != (want["sha256"], want["size"]):
            raise SignatureError(
                manifest.name,
                f"{root / rel}: sha256 {digest[:16]}… size {size}, signed {want['sha256'][:16]}… "
                f"size {want['size']} (changed after signing)",
            )


def _check_rollback(manifest: Manifest, trust: TrustStore) -> None:
    try:
        newer = trust.check_and_record_version(manifest.name, manifest.version)
    except ValueError as exc:
        raise SignatureError(manifest.name, str(exc)) from None
    if newer is not None:
        raise SignatureError(
            manifest.name,
            f"{manifest.path}: version {manifest.version} is older than {newer}, already seen "
            "(rollback refused)",
        )


def verify_package(root: Path | str | Manifest, trust: TrustStore, *, record: bool = True) -> VerifiedPackage:
    """Verify the package in place (signature, key, manifest, files, rollback). With record=False the
    rollback state is only read, not updated (for `tritium plugin verify`)."""
    manifest = root if isinstance(root, Manifest) else load_manifest(root)
    sig_path = manifest.root / SIGNATURE_NAME
    sig_bytes = sig_path.read_bytes() if sig_path.is_file() else None
    kid, statement = check_statement(manifest, sig_bytes, trust)
    _check_files(manifest, manifest.root, statement["files"])
    if record:
        _check_rollback(manifest, trust)
    else:
        seen = trust.highest_version(manifest.name)
        from packaging.version import Version

        if seen is not None and Version(manifest.version) < Version(seen):
            raise SignatureError(
                manifest.name, f"{manifest.path}: version {manifest.version} is older than {seen} (rollback)"
            )
    return VerifiedPackage(manifest, kid, statement)


def _copy_hashing(src: Path, dst: Path) -> tuple[str, int]:
    """Copy src to dst (refusing symbolic links), hashing the bytes as they are written: what is checked
    is what was copied, whatever happens to src meanwhile."""
    h = hashlib.sha256()
    size = 0
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f, open(dst, "xb") as out:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{src} is not a regular file")
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
            out.write(chunk)
            size += len(chunk)
        mode = os.fstat(f.fileno()).st_mode
    os.chmod(dst, 0o555 if mode & 0o111 else 0o444)
    return h.hexdigest(), size


KEEP_COPIES = 3  # verified copies kept per plugin (a draining old version may still run from one)


def default_copy_root() -> Path:
    """Where verified copies live: $TRITIUM_VERIFIED_DIR, else /var/lib/tritium/verified for a root core
    (a place a plugin running as uid 65534 can reach), else ~/.cache/tritium/verified."""
    env = os.environ.get("TRITIUM_VERIFIED_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/tritium/verified")
    return Path.home() / ".cache" / "tritium" / "verified"


def _prune_copies(copy_root: Path, name: str, keep: Path) -> None:
    copies = sorted(
        (p for p in copy_root.glob(f"{name}-*") if p.is_dir() and p != keep and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
    )
    for old in copies[: max(len(copies) - (KEEP_COPIES - 1), 0)]:
        _remove_tree(old)


def verified_copy(manifest: Manifest, trust: TrustStore, copy_root: Path | str) -> VerifiedPackage:
    """Verify `manifest`'s package and return the verified package of a private, read-only copy of it.

    The signature and manifest bytes are read once and the files are hashed while being copied, so
    the copy holds exactly the bytes that were checked; the plugin is then started from the copy (which
    only the core's user can write, and which the sandbox mounts read-only). An existing copy (same
    statement) is re-hashed instead of copied again.
    """
    sig_path = manifest.root / SIGNATURE_NAME
    try:
        sig_bytes = sig_path.read_bytes()
    except FileNotFoundError:
        sig_bytes = None
    toml_bytes = manifest.path.read_bytes()
    kid, statement = check_statement(manifest, sig_bytes, trust)
    signed = statement["files"]
    tag = hashlib.sha256(sig_bytes + toml_bytes).hexdigest()[:20]
    copy_root = Path(copy_root)
    copy_root.mkdir(parents=True, exist_ok=True)
    dest = copy_root / f"{manifest.name}-{tag}"
    if dest.is_dir():
        # The copy already exists; the package itself must still be what was signed (a changed source
        # is reported, not silently papered over by the old copy).
        _check_files(manifest, manifest.root, signed)
    else:
        tmp = Path(tempfile.mkdtemp(prefix=f".{manifest.name}-", dir=copy_root))
        try:
            present = set(package_files(manifest.root))
            for rel in sorted(present - set(signed)):
                raise SignatureError(
                    manifest.name, f"{manifest.root / rel}: file is not covered by the signature (added)"
                )
            for rel in sorted(signed):
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    digest, size = _copy_hashing(manifest.root / rel, target)
                except FileNotFoundError:
                    raise SignatureError(
                        manifest.name, f"{manifest.root / rel}: signed file is missing (removed)"
                    ) from None
                except OSError as exc:
                    raise SignatureError(
                        manifest.name, f"{manifest.root / rel}: cannot copy: {exc}"
                    ) from None
                want = signed[rel]
                if (digest, size) != (want["sha256"], want["size"]):
                    raise SignatureError(
                        manifest.name,
                        f"{manifest.root / rel}: sha256 {digest[:16]}… size {size}, signed "
                        f"{want['sha256'][:16]}… size {want['size']} (changed after signing)",
                    )
            (tmp / MANIFEST_NAME).write_bytes(toml_bytes)
            (tmp / SIGNATURE_NAME).write_bytes(sig_bytes)
            for p in [*tmp.rglob("*"), tmp]:
                if p.is_dir():
                    p.chmod(0o555)
                elif p.name in (MANIFEST_NAME, SIGNATURE_NAME):
                    p.chmod(0o444)
            os.replace(tmp, dest)
        except BaseException:
            _remove_tree(tmp)
            raise
        _prune_copies(copy_root, manifest.name, dest)
    copy = load_manifest(dest)
    # Re-check the copy as a whole (manifest bytes and files); cheap, and covers a reused copy.
    check_statement(copy, (dest / SIGNATURE_NAME).read_bytes(), trust)
    _check_files(copy, dest, signed)
    _check_rollback(copy, trust)
    return VerifiedPackage(copy, kid, statement)


def _remove_tree(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class SignatureVerifier:
    """The `Supervisor(verify=...)` hook: verify a package before every launch and return the manifest
    of its verified private copy, which is what gets started.

    allow_unsigned (or $TRITIUM_ALLOW_UNSIGNED_PLUGINS=1) is the development switch: a package that
    fails verification is then started from its own folder anyway, with a loud warning each time.
    """

    trust: TrustStore = field(default_factory=TrustStore.default)
    copy_root: Path = field(default_factory=default_copy_root)
    allow_unsigned: bool | None = None
    verified: dict[str, str] = field(default_factory=dict)  # plugin name -> key id (for doctor)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.allow_unsigned is None:
            self.allow_unsigned = os.environ.get(DEV_SWITCH, "") == "1"
        if self.allow_unsigned:
            log.warning(
                "!!! %s: plugins that are unsigned or fail signature verification WILL RUN. "
                "Development only: never on a shared host. !!!",
                DEV_SWITCH,
            )

    def __call__(self, manifest: Manifest) -> Manifest:
        """Verify `manifest`'s package; return the manifest to launch (the verified copy's)."""
        try:
            with self._lock:
                result = verified_copy(manifest, self.trust, self.copy_root)
        except SignatureError as exc:
            reason = _reason(exc.reason)
            if self.allow_unsigned:
                security_events.record(manifest.name, "unsigned_allowed", reason, exc.reason)
                log.warning(
                    "!!! plugin %s runs UNVERIFIED (%s) because %s=1 — development only !!!",
                    manifest.name,
                    exc.reason,
                    DEV_SWITCH,
                )
                self.verified[manifest.name] = "UNVERIFIED"
                return manifest
            security_events.record(manifest.name, "rejected", reason, exc.reason)
            raise
        except ManifestError as exc:
            security_events.record(manifest.name, "rejected", "manifest", exc.reason)
            raise
        self.verified[manifest.name] = result.key_id
        log.info("plugin %s %s: signature by key %s verified", manifest.name, manifest.version, result.key_id)
        return run_from_copy(result.manifest, manifest.root)


RUN_COPY_MODULE = "tritium.plugin_host.sandbox.run_copy"


def run_from_copy(copy: Manifest, original_root: Path) -> Manifest:
    """`copy` with its entry rewritten so that a package started by module name (`{python} -m
    tritium.plugins.backend_cpu`, whose folder is the package itself) is imported from the verified
    copy instead of the installed tree (see sandbox/run_copy.py); other entries already run from the
    copy (the working directory and `{root}` are the copy's)."""
    entry = list(copy.entry)
    if "-m" not in entry[:2] or entry.index("-m") + 1 >= len(entry):
        return copy
    i = entry.index("-m")
    module = entry[i + 1]
    if module.rpartition(".")[2] != Path(original_root).name:
        return copy
    rewritten = (*entry[:i], "-m", RUN_COPY_MODULE, "{root}", module, *entry[i + 2 :])
    return dataclasses.replace(copy, entry=rewritten)


def _reason(message: str) -> str:
    """A short, stable label of a SignatureError message, for metrics."""
    for needle, label in (
        ("missing signature", "unsigned"),
        ("revoked key", "revoked_key"),
        ("unknown key", "unknown_key"),
        ("does not verify", "bad_signature"),
        ("malformed signature", "bad_signature"),
        ("manifest edited", "manifest_edited"),
        ("unsigned files", "manifest_edited"),
        ("rollback", "rollback"),
        ("(added)", "file_added"),
        ("(removed)", "file_removed"),
        ("changed after signing", "file_changed"),
    ):
        if needle in message:
            return label
    return "other"
