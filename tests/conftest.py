"""Shared test paths and helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
BITNETCPP_FIXTURES = FIXTURES / "bitnetcpp"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES
