"""llama.cpp's SentencePiece tokenizer: the bitnet.cpp fixture prompt, merge order, byte fallback, special
tokens, and exact round trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tritium.core.tokenizer import StreamDecoder, TokenType, from_gguf_metadata

from tests.conftest import BITNETCPP_FIXTURES
from tests.tokenizer.conftest import FIXTURE_NAMES, FIXTURE_PROMPT, FIXTURE_PROMPT_IDS


@pytest.fixture(scope="module")
def tok(fixture_meta):
    return from_gguf_metadata(fixture_meta("bitnet-b158-tiny"))


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_prompt_tokenizes_like_llama_cpp(fixture_meta, name):
    tok = from_gguf_metadata(fixture_meta(name))
    ids = tok.encode(FIXTURE_PROMPT)
    assert ids == FIXTURE_PROMPT_IDS
    recorded = np.load(BITNETCPP_FIXTURES / f"{name}.prompt_greedy.tokens.npy")
    assert ids == recorded[:33].tolist()
    assert tok.decode(ids) == FIXTURE_PROMPT


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_greedy_ids_decode_to_llama_cli_text(fixture_meta, name):
    tok = from_gguf_metadata(fixture_meta(name))
    greedy = np.load(BITNETCPP_FIXTURES / f"{name}.prompt_greedy.tokens.npy")[33:].tolist()
    expected = (BITNETCPP_FIXTURES / f"{name}.greedy.txt").read_bytes().decode("utf-8")
    assert expected.startswith(" ")          # llama-cli prints the first piece "▁w78" as " w78"
    assert tok.decode(greedy) == expected
    stream = StreamDecoder(tok)
    assert "".join(stream.feed(i) for i in greedy) + stream.flush() == expected


def test_fixture_vocab_properties(tok):
    assert tok.n_vocab == 400
    assert (tok.bos_id, tok.eos_ids, tok.add_bos, tok.add_eos) == (1, (2,), True, False)
    assert tok.token_text(47) == "<0x2C>" and tok.token_bytes(47) == b","
    assert tok.token_type(0) == TokenType.UNKNOWN and tok.token_type(1) == TokenType.CONTROL
    assert tok.is_special(1) and tok.is_special(0) and not tok.is_special(47)
    assert tok.token_bytes(312) == b" w53"
    assert tok.token_text(293) == "▁h"
    assert tok.decode([1, 293, 2], skip_special=False) == "<s>h</s>"


def test_special_tokens_decode(tok):
    h = tok.encode("h", add_bos=False)                       # "▁h"
    assert tok.decode(h) == " h"                               # no BOS: the space is kept
    assert tok.decode([1, *h]) == "h"                          # after BOS it is the encoder's space
    assert tok.decode([1, *h, 2]) == "h"                       # control tokens are skipped
    assert tok.decode([1, *h, 2], skip_special=False) == "<s>h</s>"
    assert tok.decode(h, strip_leading_space=True) == "h"
    assert tok.decode([1, *h], strip_leading_space=False) == " h"


def test_byte_fallback(tok):
    # ',' is not a piece: byte token <0x2C> (id 3 + 0x2C); 'é' is two byte tokens.
    assert tok.encode(",", add_bos=False) == [259, 3 + 0x2C]
    assert tok.encode("é", add_bos=False) == [259, 3 + 0xC3, 3 + 0xA9]
    assert tok.decode([1, 259, 3 + 0xC3, 3 + 0xA9]) == "é"
    assert tok.encode("", add_bos=True) == [1] and tok.encode("", add_bos=False) == []


def test_parse_special(tok):
    plain = tok.encode("<s>hi</s>")
    assert 2 not in plain[1:] and plain.count(1) == 1           # spelled out as text
    parsed = tok.encode("<s>hi</s>", parse_special=True)
    # llama.cpp prefixes a space to text that follows a special token.
    assert parsed == [1, 1, *tok.encode("hi", add_bos=False), 2]
    assert tok.encode("</s>x", add_bos=False, parse_special=True) == [2, *tok.encode("x", add_bos=False)]


def naive_spm(text: str, pieces: dict[str, int], scores: list[float]) -> list[str]:
    """Reference: repeatedly merge the adjacent pair with the highest score (leftmost on ties)."""
    symbols = list(text)
    while True:
        best = None
        for i in range(len(symbols) - 1):
            tid = pieces.get(symbols[i] + symbols[i + 1])
            if tid is not None and (best is None or scores[tid] > best[0]):
                best = (scores[tid], i)
        if best is None:
            return symbols
        i = best[1]
        symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]


def test_tie_breaking_prefers_leftmost(spm_meta):
    no_prefix = {"tokenizer.ggml.add_space_prefix": False}
    tok = from_gguf_metadata(spm_meta([("▁", -1, 1), ("a", -1, 1), ("b", -1, 1), ("c", -1, 1),
                                       ("ab", -5, 1), ("bc", -5, 1)], **no_prefix))
    ids = tok.encode("abc", add_bos=False)
    assert [tok.token_text(i) for i in ids] == ["ab", "c"]
    tok = from_gguf_metadata(spm_meta([("▁", -1, 1), ("a", -1, 1), ("b", -1, 1), ("c", -1, 1),
                                       ("ab", -5, 1), ("bc", -4, 1)], **no_prefix))
    assert [tok.token_text(i) for i in tok.encode("abc", add_bos=False)] == ["a", "bc"]


@st.composite
def small_vocab_and_text(draw):
    alphabet = "abc▁"
    pieces = sorted(draw(st.sets(st.text(alphabet, min_size=2, max_size=4), max_size=25)))
    scores = draw(st.lists(st.integers(-6, 0), min_size=len(pieces), max_size=len(pieces)))
    text = draw(st.text("abc ", max_size=25))
    return pieces, scores, text


@settings(max_examples=150, deadline=None)
@given(small_vocab_and_text())
def test_merge_order_matches_naive_reference(spm_meta, case):
    pieces, scores, text = case
    entries = [(c, -10.0, 1) for c in "abc▁"]
    entries += [(p, float(s), 1) for p, s in zip(pieces, scores, strict=True)]
    tok = from_gguf_metadata(spm_meta(entries))
    ids = tok.encode(text, add_bos=False)
    escaped = (" " + text).replace(" ", "▁") if text else ""
    expected = naive_spm(escaped, tok.vocab.token_to_id, list(tok.vocab.scores))
    assert [tok.token_text(i) for i in ids] == expected


# Text without U+2581: SentencePiece writes spaces as "▁", so a literal "▁" comes back as a space.
unicode_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\u2581"),
                       max_size=60)


@settings(max_examples=200, deadline=None)
@given(unicode_text)
def test_round_trip_with_bos(tok, text):
    ids = tok.encode(text)
    assert ids[0] == 1
    assert tok.decode(ids) == text


@settings(max_examples=100, deadline=None)
@given(unicode_text)
def test_round_trip_without_bos(tok, text):
    ids = tok.encode(text, add_bos=False)
    assert tok.decode(ids, strip_leading_space=True) == text
    assert tok.decode(ids) == (" " + text if text else "")


def test_user_defined_tokens_are_always_parsed(spm_meta):
    tok = from_gguf_metadata(spm_meta([("▁", -1, 1), ("x", -1, 1), ("<tool>", 0, 4), ("<ctl>", 0, 3)]))
    ids = tok.encode("x<tool>x<ctl>", add_bos=False)
    tool = tok.vocab.token_to_id["<tool>"]
    ctl = tok.vocab.token_to_id["<ctl>"]
    assert tool in ids and ctl not in ids
    assert ids[2] == tool and tok.decode(ids) == " x<tool> x<ctl>"
    assert tok.decode([tool]) == "<tool>"                      # USER_DEFINED is printed even when skipping
    assert tok.decode([ctl]) == "" and tok.decode([ctl], skip_special=False) == "<ctl>"


def test_unused_tokens_decode_to_nothing(spm_meta):
    tok = from_gguf_metadata(spm_meta([("▁", -1, 1), ("<unused0>", 0, 5)]))
    assert tok.decode([tok.n_vocab - 1], skip_special=False) == ""


def test_eot_spelling_ends_generation_and_becomes_control(spm_meta):
    tok = from_gguf_metadata(spm_meta([("▁", -1, 1), ("<|eot_id|>", 0, 1)]))
    eot = tok.n_vocab - 1
    assert tok.eos_ids == (2, eot)
    assert tok.token_type(eot) == TokenType.CONTROL


def test_add_space_prefix_false(spm_meta):
    no_prefix = {"tokenizer.ggml.add_space_prefix": False}
    tok = from_gguf_metadata(spm_meta([("▁", -1, 1), ("a", -1, 1)], **no_prefix))
    assert tok.encode("a", add_bos=False) == [tok.vocab.token_to_id["a"]]
    assert tok.decode(tok.encode("a")) == "a"


def test_add_eos_from_metadata(spm_meta):
    tok = from_gguf_metadata(spm_meta([("▁", -1, 1)], **{"tokenizer.ggml.add_eos_token": True}))
    assert tok.encode("") == [1, 2]
    assert tok.encode("", add_bos=False) == []
