"""`tritium` as a user runs it (a subprocess of the installed entry point) on the bitnet.cpp fixtures."""

from __future__ import annotations

import json

import pytest

from tests.cli.cli_process import needs_runtime, tritium
from tests.conftest import BITNETCPP_FIXTURES

PROMPT = "hello world, this is a tiny bitnet test"
B158 = BITNETCPP_FIXTURES / "bitnet-b158-tiny.i2_s.gguf"


def _assert_clean_error(result, *fragments):
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1].startswith("error: ")  # after the "loaded ..." line, if any
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


@pytest.mark.parametrize(("name", "stream"), [("bitnet-b158-tiny", False), ("bitnet-gqa-tiny", True)])
def test_generate_stdout_is_exactly_bitnet_cpps_greedy_text(name, stream):
    needs_runtime()
    expected = (BITNETCPP_FIXTURES / f"{name}.greedy.txt").read_text()
    result = tritium("generate", "--model", BITNETCPP_FIXTURES / f"{name}.i2_s.gguf", "--temperature", "0",
                     "--max-tokens", "32", "--prompt", PROMPT, *(["--stream"] if stream else []))
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
    assert "tok/s" in result.stderr and "loaded" in result.stderr


def test_missing_model_file():
    _assert_clean_error(tritium("generate", "--model", "/no/such/model.gguf", "--prompt", "hi"),
                        "/no/such/model.gguf")


def test_bad_model_file(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(B158.read_bytes()[:5000])  # a truncated GGUF
    _assert_clean_error(tritium("generate", "--model", bad, "--prompt", "hi"), str(bad))
    _assert_clean_error(tritium("inspect", bad), str(bad))


def test_invalid_sampling_value():
    _assert_clean_error(tritium("generate", "--model", B158, "--prompt", "hi", "--top-p", "1.5"), "--top-p")


def test_prompt_longer_than_the_context():
    needs_runtime()
    _assert_clean_error(tritium("generate", "--model", B158, "--prompt", PROMPT, "--n-ctx", "16", "-n", "-1"),
                        "the prompt has 33 tokens but the context window is 16 tokens")


def test_inspect_text_lists_every_tensor():
    result = tritium("inspect", B158)
    assert result.returncode == 0, result.stderr
    for word in ("bitnet-b1.58", "I2_S", "how the file was interpreted", "chat template", "not supported"):
        assert word in result.stdout
    for i in range(2):
        for t in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
            assert f"blk.{i}.{t}.weight" in result.stdout


def test_inspect_json():
    result = tritium("inspect", "--json", B158)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["architecture"] == "bitnet-b1.58"
    assert report["hyperparameters"]["n_layer"] == 2 and report["hyperparameters"]["n_vocab"] == 400
    assert report["tokenizer"]["bos_id"] == 1 and report["tokenizer"]["chat_template"] is False
    types = {t["name"]: t["type"] for t in report["tensors"]}
    assert len(types) == 24 and types["blk.0.attn_q.weight"] == "I2_S" and types["token_embd.weight"] == "F16"
    assert next(t for t in report["tensors"] if t["name"] == "blk.0.ffn_down.weight")["bytes"] == 40992
    assert report["interpretation"]


def test_chat_over_a_pipe():
    needs_runtime()
    result = tritium("chat", "--model", B158, "--temperature", "0", "--max-tokens", "8",
                     stdin="hello\nagain\n/exit\n")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    assert "Traceback" not in result.stderr
