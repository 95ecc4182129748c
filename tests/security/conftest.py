"""Fixtures of the security tests: a throwaway signing key and trust stores made at test time."""

from __future__ import annotations

from pathlib import Path

import pytest
from tritium.plugin_host.trust_store import TrustStore, generate_keypair, load_private_key


class Keys:
    """A throwaway test key (trusted) and a second key that the trust store does not know."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.key_id, key_path, pub_path = generate_keypair(root / "keys")
        self.private = load_private_key(key_path)
        self.other_id, other_key, _ = generate_keypair(root / "other-keys")
        self.other = load_private_key(other_key)
        self.pub_path = pub_path

    def store(self, name: str) -> TrustStore:
        """A fresh trust store (own rollback state) that trusts the test key."""
        store = TrustStore.at(self.root / "stores" / name)
        store.add_key(self.pub_path)
        return store


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> Keys:
    return Keys(tmp_path_factory.mktemp("trust"))
