"""Re-checks the committed llama.cpp fixtures against a live llama-cpp-python (the `bench` extra).

Skipped when llama_cpp is not importable. On the machine that made the fixtures the outputs are bit for bit
the same; on another CPU (other SIMD paths, other summation order) small differences are allowed, with the
same kind of bar the engine is held to, but tighter.
"""

from __future__ import annotations

import numpy as np
import pytest
from lcfixtures import (
    LLAMACPP_FIXTURES,
    agreement,
    generator,
    random_logits,
    random_tokens,
    ref,
    tokenizer_cases,
)

pytestmark = pytest.mark.peer

MODEL, VARIANT = "tq-mha-tiny", "tq2_0"


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e .[bench])")
    gen = generator()
    path = gen.write_gguf(MODEL, VARIANT, tmp_path_factory.mktemp("live") / f"{MODEL}.{VARIANT}.gguf")
    assert gen.sha256(path) == ref(MODEL)["files"][VARIANT]["sha256"], "the generator no longer reproduces"
    return gen.open_peer(path)


def test_live_random_logits(llm):
    live = generator().peer_logits(llm, random_tokens(MODEL))
    stored = random_logits(MODEL, VARIANT)
    stats = agreement(live, stored)
    print(f"\n[live llama.cpp] random: {stats}")
    assert stats["min_cosine"] >= 0.9999 and not stats["argmax_mismatch_sure"], stats


def test_live_greedy(llm):
    gen = generator()
    for p in ref(MODEL)["prompts"]:
        ids = llm.tokenize(p["prompt"].encode("utf-8"), add_bos=True, special=False)
        assert ids == p["token_ids"]
        greedy, logits = gen.peer_greedy(llm, ids, len(p["greedy_token_ids"]))
        assert greedy == p["greedy_token_ids"]
        if "logits_file" in p:
            stats = agreement(logits, np.load(LLAMACPP_FIXTURES / p["logits_file"]))
            assert stats["min_cosine"] >= 0.9999, stats


def test_live_tokenizer(llm):
    assert generator().tokenize_table(llm) == tokenizer_cases()
