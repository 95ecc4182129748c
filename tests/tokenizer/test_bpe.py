"""llama.cpp's byte-level BPE (GGUF "gpt2"): ids agree with the `tokenizers` library on the same vocabulary,
pre-tokenizers chosen by tokenizer.ggml.pre, exact round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tritium.core.errors import TokenizerError
from tritium.core.tokenizer import StreamDecoder, from_gguf_metadata
from tritium.core.tokenizer.bpe_pretokenizer import pre_tokenizer_for

from tests.tokenizer.conftest import CORPUS, gguf_meta_from_hf

EXTRA_TEXTS = ["", " ", "  leading", "trailing  ", "a\n\n\nb", "x  \n y", "DON'T it'S we'RE", "12345678",
               "\t\tindent", "é", "😀", "<|eot_id|>", "mixed 日本 text 123 ...!!!"]


@pytest.fixture(scope="module")
def llama3(hf_llama3):
    return from_gguf_metadata(gguf_meta_from_hf(hf_llama3, "llama-bpe"))


@pytest.fixture(scope="module")
def gpt2(hf_gpt2):
    return from_gguf_metadata(gguf_meta_from_hf(hf_gpt2, "gpt-2"))


@pytest.mark.parametrize("text", CORPUS[:8] + EXTRA_TEXTS)
def test_llama3_ids_match_tokenizers_library(llama3, hf_llama3, text):
    # The library always cuts special tokens out of the text, as parse_special=True does.
    assert llama3.encode(text, add_bos=False, parse_special=True) == \
        hf_llama3.encode(text, add_special_tokens=False).ids


@pytest.mark.parametrize("text", CORPUS[:8] + EXTRA_TEXTS)
def test_gpt2_ids_match_tokenizers_library(gpt2, hf_gpt2, text):
    assert gpt2.encode(text, add_bos=False, parse_special=True) == \
        hf_gpt2.encode(text, add_special_tokens=False).ids


# Mostly the characters the tiny vocabulary has merges for (so merges are exercised), plus anything
# assigned in this Python's Unicode database: code points assigned later (Cn here) are letters to the
# `regex` module's newer tables and not to the `tokenizers` library's, so the two pre-tokenizers split
# them differently (found: U+3D569 before U+00B4), a difference of Unicode versions, not of the BPE.
common_text = st.text(st.one_of(st.sampled_from(list("abcdefghijklmnopqrstuvwxyzTHE0123 \n\t'.,!?日本😀")),
                                st.characters(blacklist_categories=("Cs", "Cn"))), max_size=50)


@settings(max_examples=150, deadline=None)
@given(common_text)
def test_llama3_ids_match_tokenizers_library_property(llama3, hf_llama3, text):
    # parse_special=True as above: hypothesis also draws special-token strings such as '<|eot_id|>'.
    ids = hf_llama3.encode(text, add_special_tokens=False).ids
    assert llama3.encode(text, add_bos=False, parse_special=True) == ids


@settings(max_examples=100, deadline=None)
@given(common_text)
def test_gpt2_ids_match_tokenizers_library_property(gpt2, hf_gpt2, text):
    ids = hf_gpt2.encode(text, add_special_tokens=False).ids
    assert gpt2.encode(text, add_bos=False, parse_special=True) == ids


any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)


@settings(max_examples=200, deadline=None)
@given(any_text)
def test_round_trip_is_exact(llama3, text):
    ids = llama3.encode(text)
    assert ids[0] == llama3.bos_id                     # llama3 pre-tokenizers add BOS by default
    assert llama3.decode(ids) == text
    assert llama3.decode(llama3.encode(text, add_bos=False)) == text


@settings(max_examples=100, deadline=None)
@given(any_text)
def test_stream_matches_decode(llama3, text):
    ids = llama3.encode(text)
    stream = StreamDecoder(llama3)
    deltas = [stream.feed(i) for i in ids]
    assert "".join(deltas) + stream.flush() == text


def test_specials(llama3):
    eot = llama3.vocab.token_to_id["<|eot_id|>"]
    assert eot in llama3.eos_ids and llama3.vocab.eos_id in llama3.eos_ids
    assert eot not in llama3.encode("<|eot_id|>")
    assert llama3.encode("hi<|eot_id|>", add_bos=False, parse_special=True)[-1] == eot
    assert llama3.decode([eot]) == "" and llama3.decode([eot], skip_special=False) == "<|eot_id|>"
    assert not llama3.strips_space_after_bos
    assert llama3.decode(llama3.encode(" x")) == " x"


def test_default_pre_tokenizer_splits_in_stages():
    # llama.cpp's "default": punctuation runs first, then GPT-2 words, then digit runs, then 3-digit groups.
    text = "Hi, you 12345!"
    assert pre_tokenizer_for("default").split(text) == ["Hi", ",", " you", " ", "123", "45", "!"]
    assert pre_tokenizer_for("gpt-2").split(text) == ["Hi", ",", " you", " 12345", "!"]
    assert pre_tokenizer_for("llama-bpe").split(text) == ["Hi", ",", " you", " ", "123", "45", "!"]


def test_ignore_merges_takes_whole_word(hf_llama3):
    meta = gguf_meta_from_hf(hf_llama3, "llama-bpe")
    tokens = list(meta["tokenizer.ggml.tokens"]) + ["Ġzzqq"]     # a token no merge path can build
    types = [*meta["tokenizer.ggml.token_type"], 1]
    meta = {**meta, "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types}
    assert from_gguf_metadata(meta).encode(" zzqq", add_bos=False) == [len(tokens) - 1]
    gpt2_style = from_gguf_metadata({**meta, "tokenizer.ggml.pre": "gpt-2"})
    assert len(gpt2_style.encode(" zzqq", add_bos=False)) > 1


def test_unknown_pre_tokenizer_is_an_error(hf_gpt2):
    with pytest.raises(TokenizerError, match="tokenizer.ggml.pre"):
        from_gguf_metadata(gguf_meta_from_hf(hf_gpt2, "no-such-pre"))


def test_missing_merges_is_an_error(hf_gpt2):
    meta = gguf_meta_from_hf(hf_gpt2, "gpt-2")
    del meta["tokenizer.ggml.merges"]
    with pytest.raises(TokenizerError, match="tokenizer.ggml.merges"):
        from_gguf_metadata(meta)
