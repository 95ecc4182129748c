"""Tritium against real llama.cpp on tiny `bitnet` GGUFs (TQ2_0, TQ1_0, per-tensor `.scale`, F32).

The reference outputs in tests/fixtures/llamacpp were produced by llama-cpp-python 0.3.36 with an F32 KV
cache (see its README.md). The bar, from the issue: at every position the cosine of the logits is >= 0.999
and the argmax is llama.cpp's wherever llama.cpp's top-2 margin is > 0.1; a 32-token greedy continuation is
identical to llama.cpp's on every test prompt. Tritium runs with an F32 KV cache too.
"""

from __future__ import annotations

import numpy as np
import pytest
from lcfixtures import (
    CASES,
    LLAMACPP_FIXTURES,
    agreement,
    generator,
    gguf_path,
    greedy_ids,
    random_logits,
    random_tokens,
    ref,
    tokenizer_cases,
)
from tritium.core.compute import Runtime
from tritium.core.model.loader import load_model

MIN_COSINE = 0.999
SURE_MARGIN = 0.1
N_CTX = 256


def case_id(case: tuple[str, str]) -> str:
    return f"{case[0]}-{case[1]}"


# ----------------------------------------------------------------------------------------------------
# the fixtures themselves (no engine needed)
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["tq-mha-tiny", "tq-gqa-tiny"])
def test_committed_ggufs_match_ref_and_generator(model, tmp_path):
    """Every committed GGUF is the one llama.cpp ran on (sha256) and the generator rewrites it byte for
    byte, so the fixtures and make_llamacpp_fixtures.py cannot drift apart."""
    gen = generator()
    for variant, info in ref(model)["files"].items():
        if not info["committed"]:
            continue
        committed = LLAMACPP_FIXTURES / info["file"]
        assert gen.sha256(committed) == info["sha256"], committed.name
        fresh = gen.write_gguf(model, variant, tmp_path / info["file"])
        assert fresh.read_bytes() == committed.read_bytes(), f"{info['file']}: generator output differs"


@pytest.mark.parametrize("model", ["tq-mha-tiny", "tq-gqa-tiny"])
def test_reference_arrays_are_consistent(model):
    r = ref(model)
    toks = random_tokens(model)
    assert toks.tolist() == r["random_token_ids"] and toks[0] == 1 and (toks[1:] >= 3).all()
    pg = np.load(LLAMACPP_FIXTURES / f"{model}.prompt_greedy.tokens.npy").tolist()
    p0 = r["prompts"][0]
    assert pg == p0["token_ids"] + p0["greedy_token_ids"]
    lg = np.load(LLAMACPP_FIXTURES / f"{model}.prompt_greedy.logits.npy")
    assert lg.shape == (len(pg), r["n_vocab"])
    # the greedy ids are the argmax of the recorded logits (llama.cpp's first maximum)
    n = p0["n_prompt_tokens"]
    assert lg[n - 1:-1].argmax(-1).tolist() == p0["greedy_token_ids"]
    assert random_logits(model, "tq2_0").shape == (len(toks), r["n_vocab"])


# ----------------------------------------------------------------------------------------------------
# Tritium vs llama.cpp
# ----------------------------------------------------------------------------------------------------
_RUNTIMES: dict[tuple[str, str], tuple[object, object]] = {}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("llamacpp-fixtures")


def engine_for(case: tuple[str, str], scratch):
    """(LoadedModel, Runtime with an F32 KV cache) for one fixture, built once per test session."""
    if case not in _RUNTIMES:
        model = load_model(gguf_path(*case, scratch))
        _RUNTIMES[case] = (model, Runtime(model.config, model.weights, kv_dtype="f32", n_ctx=N_CTX))
    return _RUNTIMES[case]


def report(label: str, stats: dict) -> None:
    print(f"\n[llamacpp] {label}: min cos {stats['min_cosine']:.6f}  max |d| {stats['max_abs_diff']:.3g}  "
          f"mean |d| {stats['mean_abs_diff']:.3g}  argmax {stats['argmax_agree_all']:.3f} "
          f"(sure positions {stats['n_sure']}, mismatches there {stats['argmax_mismatch_sure']})")


def assert_bar(stats: dict) -> None:
    assert stats["min_cosine"] >= MIN_COSINE, stats
    assert not stats["argmax_mismatch_sure"], stats


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_config_matches_file(case, scratch):
    model, rt = engine_for(case, scratch)
    c = ref(case[0])["config"]
    cfg = model.config
    assert model.format == "gguf"
    assert (cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.n_head_kv, cfg.n_ff, cfg.n_vocab) == (
        c["n_embd"], c["n_layer"], c["n_head"], c["n_head_kv"], c["n_ff"], c["n_vocab"])
    assert cfg.ffn_act == "silu" and cfg.tie_embeddings
    assert cfg.rope_base == c["rope_base"]
    # llama.cpp quantizes activations to Q8_K for TQ weights and not at all for F32 weights
    assert cfg.act_quant == ("none" if case[1] == "f32" else "q8_k")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_random_input_logits(case, scratch):
    """64 tokens (BOS + 63 random ids, byte tokens included) in one eval call, logits of every position."""
    model, rt = engine_for(case, scratch)
    toks = random_tokens(case[0])
    seq = rt.new_sequence()
    ours = np.asarray(rt.eval(seq, toks.tolist(), all_logits=True), dtype=np.float32)
    peer = random_logits(*case)
    assert ours.shape == peer.shape
    stats = agreement(ours, peer, SURE_MARGIN)
    report(f"{case_id(case)} random[64]", stats)
    assert_bar(stats)


def test_random_input_logits_f16_kv(scratch):
    """With kv_dtype "f16" Tritium is held to the same bar against llama.cpp's default F16 KV cache."""
    model, _ = engine_for(("tq-mha-tiny", "tq2_0"), scratch)
    rt = Runtime(model.config, model.weights, kv_dtype="f16", n_ctx=N_CTX)
    ours = np.asarray(rt.eval(rt.new_sequence(), random_tokens("tq-mha-tiny").tolist(), all_logits=True))
    peer = np.load(LLAMACPP_FIXTURES / ref("tq-mha-tiny")["f16_kv"]["file"])
    stats = agreement(ours, peer, SURE_MARGIN)
    report("tq-mha-tiny-tq2_0 random[64], F16 KV both", stats)
    assert_bar(stats)


@pytest.mark.parametrize("case", [c for c in CASES if c[1] in ("tq2_0", "tq1_0")], ids=case_id)
def test_prompt_then_single_token_logits(case, scratch):
    """Teacher-forced on llama.cpp's greedy path: the prompt in one call, then one token per call."""
    model, rt = engine_for(case, scratch)
    r = ref(case[0])
    tokens = np.load(LLAMACPP_FIXTURES / f"{case[0]}.prompt_greedy.tokens.npy").tolist()
    peer = np.load(LLAMACPP_FIXTURES / f"{case[0]}.prompt_greedy.logits.npy")
    n = r["prompts"][0]["n_prompt_tokens"]
    seq = rt.new_sequence()
    rows = [np.asarray(rt.eval(seq, tokens[:n], all_logits=True), dtype=np.float32)]
    for t in tokens[n:]:
        rows.append(np.asarray(rt.eval(seq, [t], all_logits=True), dtype=np.float32).reshape(1, -1))
    ours = np.concatenate(rows)
    stats = agreement(ours, peer, SURE_MARGIN)
    report(f"{case_id(case)} prompt+greedy[{len(tokens)}]", stats)
    assert_bar(stats)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_greedy_continuation(case, scratch):
    """32 greedy tokens (first argmax, one eval per token) equal llama.cpp's on every test prompt."""
    model, rt = engine_for(case, scratch)
    r = ref(case[0])
    for i, p in enumerate(r["prompts"]):
        assert model.tokenizer.encode(p["prompt"]) == p["token_ids"], p["prompt"]
        seq = rt.new_sequence()
        logits = np.asarray(rt.eval(seq, p["token_ids"]))
        out: list[int] = []
        for _ in range(len(p["greedy_token_ids"])):
            t = int(np.argmax(logits[-1]))
            out.append(t)
            logits = np.asarray(rt.eval(seq, [t]))
        expected = greedy_ids(*case, i)
        assert out == expected, f"prompt {i}: ours {out} vs llama.cpp {expected}"
        if case[1] == "tq2_0":
            assert model.tokenizer.decode(out) == p["greedy_text"]


# ----------------------------------------------------------------------------------------------------
# tokenizer vs llama.cpp's tokenizer
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer():
    return load_model(LLAMACPP_FIXTURES / ref("tq-mha-tiny")["files"]["tq2_0"]["file"]).tokenizer


@pytest.mark.parametrize("case", tokenizer_cases(), ids=lambda c: repr(c["text"])[:40])
def test_tokenizer_matches_llamacpp(case, tokenizer):
    text = case["text"]
    assert tokenizer.encode(text, add_bos=False) == case["ids"]
    assert tokenizer.encode(text, add_bos=True) == case["ids_bos"]
    assert tokenizer.encode(text) == case["ids_bos"]  # the file says add_bos_token = true
    assert tokenizer.encode(text, add_bos=False, parse_special=True) == case["ids_parse_special"]
    # llama_token_to_piece, concatenated (no BOS in front, so no space is dropped; special=False ids hold
    # no control tokens)
    assert b"".join(tokenizer.token_bytes(i) for i in case["ids"]) == bytes.fromhex(case["detok_hex"])
