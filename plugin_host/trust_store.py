"""Which Ed25519 keys may sign plugins, which are revoked, and the highest version seen of each plugin.

Layout of a trust folder (each layer has the same one):

    <dir>/keys/<key id>.pub     PEM public key (SubjectPublicKeyInfo); the file name must be its key id
    <dir>/revoked               revoked key ids, one per line ('#' starts a comment)

Layers, all read: `release` (<repo>/trust: the project's release key that signs the builtin plugins),
`system` ($TRITIUM_TRUST_SYSTEM_DIR or /etc/tritium/trust), `user` ($TRITIUM_TRUST_USER_DIR or
~/.config/tritium/trust). A key revoked in any layer is revoked. The rollback state (highest version
of each plugin name that passed verification) is one JSON file, $TRITIUM_TRUST_STATE or
<user dir>/versions.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from packaging.version import InvalidVersion, Version

RELEASE_TRUST_DIR = Path(__file__).resolve().parents[1] / "trust"
KEY_SUFFIX = ".pub"
REVOKED_NAME = "revoked"


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key id of a public key: the first 16 hex digits of the sha256 of its 32 raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    """PEM (SubjectPublicKeyInfo) bytes of a public key."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def generate_keypair(out_dir: Path | str) -> tuple[str, Path, Path]:
    """Make a new Ed25519 key pair in `out_dir`: `<id>.key` (PKCS#8 PEM, mode 0600) and `<id>.pub`.
    Returns (key id, private key path, public key path)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    kid = key_id(private.public_key())
    key_path, pub_path = out / f"{kid}.key", out / f"{kid}{KEY_SUFFIX}"
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_path.write_bytes(public_pem(private.public_key()))
    return kid, key_path, pub_path


def load_private_key(path: Path | str) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file; ValueError names the file if it is not one."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key ({type(key).__name__})")
    return key


def load_public_key(path: Path | str) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file; ValueError names the file if it is not one."""
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key ({type(key).__name__})")
    return key


def default_trust_dirs(env: dict[str, str] | None = None) -> dict[str, Path]:
    """The trust folders by layer, from the environment (or the given mapping)."""
    env = os.environ if env is None else env
    user = Path(env.get("TRITIUM_TRUST_USER_DIR", Path.home() / ".config" / "tritium" / "trust"))
    return {
        "release": Path(env.get("TRITIUM_TRUST_RELEASE_DIR", RELEASE_TRUST_DIR)),
        "system": Path(env.get("TRITIUM_TRUST_SYSTEM_DIR", "/etc/tritium/trust")),
        "user": user,
    }


@dataclass
class TrustedKey:
    """A public key the store knows, and where it came from."""

    key_id: str
    public_key: Ed25519PublicKey
    path: Path
    layer: str


@dataclass
class TrustStore:
    """Trusted keys, revoked key ids and the rollback state. Reads the folders on each lookup, so a key
    added or revoked on disk takes effect at the next launch without a restart."""

    dirs: dict[str, Path]
    state_path: Path
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def default(cls, env: dict[str, str] | None = None) -> TrustStore:
        """The store of the default folders (see the module docstring)."""
        env = os.environ if env is None else env
        dirs = default_trust_dirs(env)
        return cls(dirs, Path(env.get("TRITIUM_TRUST_STATE", dirs["user"] / "versions.json")))

    @classmethod
    def at(cls, folder: Path | str) -> TrustStore:
        """A store with a single folder (layer `user`) holding keys, revocations and the state."""
        folder = Path(folder)
        return cls({"user": folder}, folder / "versions.json")

    # ---- keys ----------------------------------------------------------------------------------
    def keys(self) -> dict[str, TrustedKey]:
        """Every well-formed key file of every layer by key id (a later layer wins a duplicate id). A file
        whose name is not its key's id is ignored: a key cannot be smuggled in under another's id."""
        found: dict[str, TrustedKey] = {}
        for layer, folder in self.dirs.items():
            kdir = folder / "keys"
            if not kdir.is_dir():
                continue
            for p in sorted(kdir.glob(f"*{KEY_SUFFIX}")):
                try:
                    pub = load_public_key(p)
                except (ValueError, OSError):
                    continue
                kid = key_id(pub)
                if p.name == f"{kid}{KEY_SUFFIX}":
                    found[kid] = TrustedKey(kid, pub, p, layer)
        return found

    def key(self, kid: str) -> TrustedKey | None:
        """The trusted key with id `kid`, or None if no layer holds it."""
        return self.keys().get(kid)

    def revoked(self) -> dict[str, Path]:
        """Revoked key ids, each with the revocation file that lists it."""
        out: dict[str, Path] = {}
        for folder in self.dirs.values():
            p = folder / REVOKED_NAME
            if not p.is_file():
                continue
            for line in p.read_text(encoding="utf-8").splitlines():
                kid = line.split("#", 1)[0].strip()
                if kid:
                    out.setdefault(kid, p)
        return out

    def _writable_dir(self) -> Path:
        return self.dirs.get("user") or list(self.dirs.values())[-1]

    def add_key(self, public_key_path: Path | str) -> str:
        """Trust the public key in `public_key_path` (copied into the user layer); returns its id."""
        pub = load_public_key(public_key_path)
        kid = key_id(pub)
        kdir = self._writable_dir() / "keys"
        kdir.mkdir(parents=True, exist_ok=True)
        (kdir / f"{kid}{KEY_SUFFIX}").write_bytes(public_pem(pub))
        return kid

    def revoke(self, kid: str) -> Path:
        """Add `kid` to the user layer's revocation list; returns the list's path."""
        p = self._writable_dir() / REVOKED_NAME
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "a", encoding="utf-8") as f:
            f.write(f"{kid}\n")
        return p

    # ---- rollback state ------------------------------------------------------------------------
    def _versions(self) -> dict[str, str]:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # A corrupt state file must not silently re-open rollbacks: refuse until it is fixed.
            raise ValueError(f"{self.state_path}: unreadable rollback state: {exc}") from None
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def highest_version(self, name: str) -> str | None:
        """The highest version of plugin `name` that passed verification so far, if any."""
        return self._versions().get(name)

    def check_and_record_version(self, name: str, version: str) -> str | None:
        """Remember `version` of `name` if it is the highest so far. Returns the higher version already
        seen (a rollback: nothing is recorded), or None when `version` is acceptable."""
        with self._lock:
            seen = self._versions()
            previous = seen.get(name)
            try:
                if previous is not None and Version(version) < Version(previous):
                    return previous
            except InvalidVersion:
                return previous
            if previous != version:
                seen[name] = version
                self.state_path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=".versions-", dir=self.state_path.parent)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(seen, f, indent=1, sort_keys=True)
                os.replace(tmp, self.state_path)
            return None
