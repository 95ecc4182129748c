"""Shared test paths and helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
BITNETCPP_FIXTURES = FIXTURES / "bitnetcpp"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


# The builtin plugins carry no release signature in a source checkout; production paths verify every
# package (tests/security runs its verifiers with allow_unsigned=False explicitly).
os.environ.setdefault("TRITIUM_ALLOW_UNSIGNED_PLUGINS", "1")
