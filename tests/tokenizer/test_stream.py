"""StreamDecoder: deltas never split a UTF-8 character and add up to decode(all ids)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tritium.core.errors import TokenizerError
from tritium.core.tokenizer import StreamDecoder, from_gguf_metadata


@pytest.fixture(scope="module")
def tok(fixture_meta):
    return from_gguf_metadata(fixture_meta("bitnet-b158-tiny"))


def byte_id(b: int) -> int:
    return 3 + b                     # <0x00> is id 3 in the fixture vocabulary


def test_two_byte_character_waits_for_its_second_byte(tok):
    stream = StreamDecoder(tok)
    assert stream.feed(byte_id(0xC3)) == ""
    assert stream.pending_bytes() == b"\xc3"
    assert stream.feed(byte_id(0xA9)) == "é"
    assert stream.flush() == ""


def test_four_byte_emoji_over_four_tokens(tok):
    stream = StreamDecoder(tok)
    out = [stream.feed(byte_id(b)) for b in "😀".encode()]
    assert out == ["", "", "", "😀"]


def test_invalid_and_truncated_bytes_become_replacement_characters(tok):
    ids = [byte_id(0xFF), 260, byte_id(0xE2), byte_id(0x82)]        # bad byte, "a", truncated "€"
    stream = StreamDecoder(tok)
    text = "".join(stream.feed(i) for i in ids) + stream.flush()
    assert text == tok.decode(ids) == "\ufffda\ufffd"


def test_bad_id_is_an_error(tok):
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        StreamDecoder(tok).feed(400)


def test_flush_resets(tok):
    stream = StreamDecoder(tok)
    stream.feed(byte_id(0xC3))
    assert stream.flush() == "\ufffd"
    assert stream.feed(1) == "" and stream.feed(293) == "h"     # a fresh stream: BOS rule applies again


EMOJI_CJK = ["😀", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "日本語", "中文", "한국어", "é", "ü", "∑", " "]
any_char = st.characters(blacklist_categories=("Cs",), blacklist_characters="\u2581")
emoji_cjk_text = st.lists(st.one_of(st.sampled_from(EMOJI_CJK), any_char), max_size=20).map("".join)


@settings(max_examples=200, deadline=None)
@given(emoji_cjk_text, st.booleans())
def test_stream_equals_decode_and_never_splits(tok, text, with_bos):
    ids = tok.encode(text, add_bos=with_bos)
    full = tok.decode(ids)
    stream = StreamDecoder(tok)
    emitted = ""
    for i in ids:
        delta = stream.feed(i)
        emitted += delta
        assert full.startswith(emitted)                     # every delta is whole characters of the result
        assert len(stream.pending_bytes()) < 4              # at most an incomplete UTF-8 sequence is held
    assert emitted + stream.flush() == full
    assert full == (text if with_bos or not text else " " + text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 399), max_size=40), st.booleans())
def test_stream_equals_decode_for_any_ids(tok, ids, skip_special):
    stream = StreamDecoder(tok, skip_special=skip_special)
    text = "".join(stream.feed(i) for i in ids) + stream.flush()
    assert text == tok.decode(ids, skip_special=skip_special)
