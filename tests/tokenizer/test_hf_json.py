"""Hugging Face folders (tokenizer.json built here with the `tokenizers` library) behind the Tokenizer
interface: ids, BOS/EOS handling, byte-level and SentencePiece-style decoding, chat templates."""

from __future__ import annotations

import json

import pytest
import tokenizers
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import decoders, models, normalizers, processors
from tritium.core.errors import TokenizerError
from tritium.core.tokenizer import StreamDecoder, from_hf_folder

from tests.tokenizer.test_chat_template import LLAMA3_TEMPLATE

any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)


@pytest.fixture(scope="module")
def llama3_folder(tmp_path_factory, hf_llama3):
    folder = tmp_path_factory.mktemp("llama3_hf")
    tok = tokenizers.Tokenizer.from_str(hf_llama3.to_str())
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", bos)])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<|begin_of_text|>", "eos_token": {"content": "<|eot_id|>"},
         "chat_template": "overridden by chat_template.jinja, as in transformers"}))
    (folder / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": [tok.token_to_id("<|end_of_text|>"), tok.token_to_id("<|eot_id|>")]}))
    (folder / "chat_template.jinja").write_text(LLAMA3_TEMPLATE)
    return folder


@pytest.fixture(scope="module")
def llama3(llama3_folder):
    return from_hf_folder(llama3_folder)


def test_llama3_folder_properties(llama3, hf_llama3):
    bos, eos, eot = (hf_llama3.token_to_id(t) for t in ("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"))
    # add_bos / add_eos are read off the post-processor (tokenizer_config.json does not say)
    assert llama3.bos_id == bos and llama3.add_bos and not llama3.add_eos
    assert llama3.eos_ids == (eot, eos)
    assert llama3.n_vocab == hf_llama3.get_vocab_size()
    assert llama3.is_special(eot) and not llama3.is_special(llama3.encode("a", add_bos=False)[0])
    assert llama3.chat_template == LLAMA3_TEMPLATE


def test_llama3_encode_matches_library(llama3, llama3_folder, hf_llama3):
    text = "Hello world, it's 2024! 日本語 😀"
    with_post_processor = tokenizers.Tokenizer.from_file(str(llama3_folder / "tokenizer.json"))
    assert llama3.encode(text) == with_post_processor.encode(text, add_special_tokens=True).ids   # BOS first
    assert llama3.encode(text, add_bos=False) == hf_llama3.encode(text, add_special_tokens=False).ids


def test_parse_special(llama3):
    eot = llama3.eos_ids[0]
    assert eot not in llama3.encode("x<|eot_id|>")
    assert llama3.encode("x<|eot_id|>", add_bos=False, parse_special=True)[-1] == eot


@settings(max_examples=150, deadline=None)
@given(any_text)
def test_byte_level_round_trip_and_stream(llama3, hf_llama3, text):
    ids = llama3.encode(text)
    assert llama3.decode(ids) == text
    assert hf_llama3.decode(ids, skip_special_tokens=True) == text        # the library agrees
    stream = StreamDecoder(llama3)
    assert "".join(stream.feed(i) for i in ids) + stream.flush() == text


def test_chat_template_from_jinja_file(llama3):
    out = llama3.apply_chat_template([{"role": "user", "content": "hi"}])
    assert out == ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n")
    ids = llama3.encode_chat([{"role": "user", "content": "hi"}])
    assert ids.count(llama3.bos_id) == 1 and ids[0] == llama3.bos_id


@pytest.fixture(scope="module")
def spm_style_folder(tmp_path_factory):
    """A Llama-2 style tokenizer.json: BPE with byte fallback over "▁"-escaped text."""
    folder = tmp_path_factory.mktemp("spm_hf")
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{b:02X}>": 3 + b for b in range(256)}}
    for piece in ["▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "▁w", "ll", "▁he", "▁hell", "▁hello", "or",
                  "▁wor", "▁world"]:
        vocab[piece] = len(vocab)
    merges = [("▁", "h"), ("▁", "w"), ("l", "l"), ("▁h", "e"), ("▁he", "ll"), ("▁hell", "o"), ("o", "r"),
              ("▁w", "or"), ("▁wor", "l")]
    merges = [m for m in merges if "".join(m) in vocab]
    tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True,
                                          fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.save(str(folder / "tokenizer.json"))
    default = "{% for m in messages %}[{{ m['content'] }}]{% endfor %}"
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True, "add_eos_token": False,
         "chat_template": [{"name": "tool_use", "template": "unused"},
                           {"name": "default", "template": default}]}))
    return folder


def test_spm_style_folder(spm_style_folder):
    tok = from_hf_folder(spm_style_folder)
    ids = tok.encode("hello world, é")
    assert ids[0] == 1 and tok.strips_space_after_bos
    assert tok.decode(ids) == "hello world, é"
    assert tok.token_bytes(3 + 0xC3) == b"\xc3"
    assert tok.decode(ids[1:]) == " hello world, é"          # no BOS: the space is kept (generated text)
    assert tok.apply_chat_template([{"role": "user", "content": "x"}]) == "[x]"


@settings(max_examples=100, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\u2581"), max_size=40))
def test_spm_style_round_trip(spm_style_folder, text):
    tok = from_hf_folder(spm_style_folder)
    assert tok.decode(tok.encode(text)) == text


def test_missing_tokenizer_json(tmp_path):
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        from_hf_folder(tmp_path)


def test_bos_not_in_vocab(tmp_path, hf_llama3):
    hf_llama3.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<nope>"}))
    with pytest.raises(TokenizerError, match="bos_token"):
        from_hf_folder(tmp_path)


def test_malformed_tokenizer_json(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        from_hf_folder(tmp_path)
