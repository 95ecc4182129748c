"""The built-in demo model: found when shipped, a clear error naming the expected path when not."""

from __future__ import annotations

import pytest
from tritium.core.errors import ModelFormatError
from tritium.core.model import demo

from tests.cli.cli_process import needs_runtime, tritium


def test_demo_model_path_when_present_and_missing(tmp_path, monkeypatch):
    shipped = tmp_path / "tritium-demo.gguf"
    monkeypatch.setattr(demo, "DEMO_MODEL", shipped)
    with pytest.raises(ModelFormatError, match="demo model is missing: expected .*tritium-demo.gguf"):
        demo.demo_model_path()
    shipped.write_bytes(b"GGUF")
    assert demo.demo_model_path() == shipped


def test_generate_without_a_model_uses_the_demo_model():
    if not demo.DEMO_MODEL.is_file():
        result = tritium("generate", "--prompt", "hi", "--max-tokens", "4")
        assert result.returncode == 2
        assert result.stderr.startswith("error: the built-in demo model is missing")
        return
    needs_runtime()
    result = tritium("generate", "--prompt", "hello", "--max-tokens", "4", "--temperature", "0")
    assert result.returncode == 0, result.stderr
    assert str(demo.DEMO_MODEL) in result.stderr
