"""GGUF tokenizer metadata: read through a real GGUF file, and rejected with the key named when malformed."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGUFReader, GGUFWriter
from tritium.core.errors import TokenizerError
from tritium.core.tokenizer import from_gguf_metadata

from tests.tokenizer.conftest import FIXTURE_PROMPT, FIXTURE_PROMPT_IDS


def test_spm_metadata_through_gguf_writer_and_reader(tmp_path, fixture_meta):
    """The fixture vocabulary written by gguf.GGUFWriter, read back by gguf.GGUFReader (arrays come back as
    numpy types), gives the same ids."""
    meta = fixture_meta("bitnet-b158-tiny")
    path = tmp_path / "vocab.gguf"
    w = GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(meta["tokenizer.ggml.tokens"])
    w.add_token_scores(meta["tokenizer.ggml.scores"])
    w.add_token_types(meta["tokenizer.ggml.token_type"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    reader = GGUFReader(str(path))
    read = {name: field.contents() for name, field in reader.fields.items()}
    read["tokenizer.ggml.scores"] = np.asarray(read["tokenizer.ggml.scores"], dtype=np.float32)
    tok = from_gguf_metadata(read)
    assert tok.encode(FIXTURE_PROMPT) == FIXTURE_PROMPT_IDS
    assert tok.apply_chat_template([{"role": "user", "content": "x"}]) == "x"


def bad(meta: dict, **changes) -> dict:
    out = dict(meta)
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize(("change", "key", "detail"), [
    ({"tokenizer__ggml__tokens": None}, "tokenizer.ggml.tokens", "missing"),
    ({"tokenizer__ggml__model": None}, "tokenizer.ggml.model", "missing"),
    ({"tokenizer__ggml__model": "t5"}, "tokenizer.ggml.model", "unsupported"),
    ({"tokenizer__ggml__scores": [0.0] * 399}, "tokenizer.ggml.scores", "399 entries"),
    ({"tokenizer__ggml__scores": None}, "tokenizer.ggml.scores", "missing"),
    ({"tokenizer__ggml__token_type": [1] * 401}, "tokenizer.ggml.token_type", "401 entries"),
    ({"tokenizer__ggml__bos_token_id": 400}, "tokenizer.ggml.bos_token_id", "outside the vocabulary"),
    ({"tokenizer__ggml__eos_token_id": "2"}, "tokenizer.ggml.eos_token_id", "integer"),
    ({"tokenizer__ggml__tokens": "abc"}, "tokenizer.ggml.tokens", "array"),
    ({"tokenizer__ggml__add_bos_token": "yes"}, "tokenizer.ggml.add_bos_token", "bool"),
])
def test_malformed_metadata_names_the_key(fixture_meta, change, key, detail):
    meta = bad(fixture_meta("bitnet-b158-tiny"), **change)
    with pytest.raises(TokenizerError) as err:
        from_gguf_metadata(meta)
    assert key in str(err.value) and detail in str(err.value)


def test_duplicate_token_is_rejected(fixture_meta):
    meta = dict(fixture_meta("bitnet-b158-tiny"))
    tokens = list(meta["tokenizer.ggml.tokens"])
    tokens[399] = tokens[398]
    meta["tokenizer.ggml.tokens"] = tokens
    with pytest.raises(TokenizerError, match="duplicate token"):
        from_gguf_metadata(meta)


def test_bad_byte_token_spelling(fixture_meta):
    meta = dict(fixture_meta("bitnet-b158-tiny"))
    types = list(meta["tokenizer.ggml.token_type"])
    types[300] = 6                                    # "▁o"-like piece typed BYTE
    meta["tokenizer.ggml.token_type"] = types
    tok = from_gguf_metadata(meta)
    with pytest.raises(TokenizerError, match=r"tokens\[300\]"):
        tok.token_bytes(300)


def test_spm_defaults_when_ids_absent(fixture_meta):
    meta = {k: v for k, v in fixture_meta("bitnet-b158-tiny").items()
            if not k.endswith(("_token_id", "add_bos_token", "add_eos_token"))}
    tok = from_gguf_metadata(meta)        # llama.cpp's SPM defaults: bos 1, eos 2, add_bos
    assert (tok.bos_id, tok.eos_ids, tok.add_bos) == (1, (2,), True)
    assert tok.encode(FIXTURE_PROMPT) == FIXTURE_PROMPT_IDS
