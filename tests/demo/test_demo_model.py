"""The shipped demo model: it is the file its README describes, its vocabulary is the one the training
script builds, Tritium tokenizes text exactly as the training did, and its greedy output is words."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO / "core" / "model" / "demo"
DEMO_GGUF = DEMO_DIR / "tritium-demo.gguf"
TEXT = REPO / "tests" / "fixtures" / "text" / "public_domain.txt"


def _load_training_script():
    spec = importlib.util.spec_from_file_location("train_demo_model", REPO / "tools" / "train_demo_model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return _load_training_script()


@pytest.fixture(scope="module")
def exported(script):
    """(metadata, dequantized tensors) of the shipped file, read with gguf-py."""
    return script.load_exported(DEMO_GGUF)


@pytest.fixture(scope="module")
def text_vocabulary() -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z]+", TEXT.read_text(encoding="utf-8"))}


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]+", text)


def test_sha256_matches_readme():
    readme = (DEMO_DIR / "README.md").read_text(encoding="utf-8")
    m = re.search(r"sha256[^0-9a-f]*([0-9a-f]{64})", readme)
    assert m, "core/model/demo/README.md must state the file's sha256"
    assert hashlib.sha256(DEMO_GGUF.read_bytes()).hexdigest() == m.group(1)


def test_heldout_split_is_where_the_text_readme_says():
    """The text's README names the byte where held-out text begins; the training split must agree."""
    text = TEXT.read_text(encoding="utf-8")
    readme = (TEXT.parent / "README.md").read_text(encoding="utf-8")
    m = re.search(r"byte ([0-9][0-9,]*) on", readme)
    assert m, "tests/fixtures/text/README.md must state the byte where the held-out part starts"
    offset = int(m.group(1).replace(",", ""))
    script = _load_training_script()
    train, heldout = script.split_paragraphs(text)
    assert text[offset - 2 : offset] == "\n\n", "the held-out part must start at a paragraph boundary"
    assert " ".join(text[offset:].split("\n\n")[0].split()) == heldout[0]
    assert len(train) + len(heldout) == len(text.strip().split("\n\n"))


def test_text_is_the_original_corpus():
    """The sample is our own CC0 text (see its README), not an eBook copy: ASCII, no eBook boilerplate."""
    raw = TEXT.read_bytes()
    assert raw.isascii()
    assert b"Gutenberg" not in raw and b"eBook" not in raw
    assert "CC0" in (TEXT.parent / "README.md").read_text(encoding="utf-8")


def test_size_is_a_few_megabytes():
    assert DEMO_GGUF.stat().st_size < 4 * 1024 * 1024


def test_metadata_is_llama_cpp_bitnet(exported):
    meta, tensors = exported
    assert meta["general.architecture"] == "bitnet"
    assert meta["general.name"] == "tritium-demo"
    assert meta["general.file_type"] == 37  # MOSTLY_TQ2_0
    assert meta["tokenizer.ggml.model"] == "llama"
    assert meta["tokenizer.ggml.add_bos_token"]
    assert not meta["tokenizer.ggml.add_eos_token"]
    n_layer = meta["bitnet.block_count"]
    n_vocab, n_embd = len(meta["tokenizer.ggml.tokens"]), meta["bitnet.embedding_length"]
    assert tensors["token_embd.weight"].shape == (n_vocab, n_embd)
    assert "output.weight" not in tensors  # tied lm_head
    for i in range(n_layer):
        for name in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
            w = tensors[f"blk.{i}.{name}.weight"]
            # ternary times one per-tensor scale: exactly three distinct values, symmetric around 0
            values = np.unique(w)
            assert len(values) == 3 and values[1] == 0 and values[0] == -values[2], name


def test_vocab_is_what_the_script_builds(script, exported):
    """The BPE-derived vocabulary is deterministic: rebuilding it from the text gives the shipped one."""
    meta, _ = exported
    train, _ = script.split_paragraphs(TEXT.read_text(encoding="utf-8"))
    pieces, scores, types = script.build_vocab(train, len(meta["tokenizer.ggml.tokens"]))
    assert list(meta["tokenizer.ggml.tokens"]) == pieces
    assert np.allclose(meta["tokenizer.ggml.scores"], scores)
    assert list(meta["tokenizer.ggml.token_type"]) == types


def test_tritium_tokenizer_matches_training_ids(script, exported):
    """Training ids came from the script's SPM encoder; Tritium's tokenizer must give the same ids."""
    tokenizer_mod = pytest.importorskip("tritium.core.tokenizer")
    meta, _ = exported
    tokenizer = tokenizer_mod.from_gguf_metadata(meta)
    enc = script.SpmEncoder(list(meta["tokenizer.ggml.tokens"]), list(meta["tokenizer.ggml.scores"]),
                            list(meta["tokenizer.ggml.token_type"]))
    train, heldout = script.split_paragraphs(TEXT.read_text(encoding="utf-8"))
    unusual = ["Once upon a time", "caf\u00e9 \u2014 na\u00efve \U0001f600", "a  b", " lead", "x\ny"]
    samples = train[::10] + heldout[::5] + unusual
    for text in samples:
        assert tokenizer.encode(text) == [script.BOS_ID, *enc.encode(text)], text[:60]


def test_reference_greedy_output_is_words(script, exported, text_vocabulary):
    """The script's numpy forward (llama.cpp's graph with Q8_K activations) on the shipped file."""
    meta, tensors = exported
    enc = script.SpmEncoder(list(meta["tokenizer.ggml.tokens"]), list(meta["tokenizer.ggml.scores"]),
                            list(meta["tokenizer.ggml.token_type"]))
    new = script.greedy(tensors, script.DemoConfig(), [script.BOS_ID, *enc.encode("Once upon a time")], 24)
    words = _words(enc.decode([t for t in new if t != script.EOS_ID]))
    assert len(words) >= 3
    assert sum(w.lower() in text_vocabulary for w in words) / len(words) >= 0.8, words


def test_engine_greedy_output_is_words(text_vocabulary):
    """Tritium's own engine on the shipped file: greedy text from "Once upon a time" is mostly words."""
    loader = pytest.importorskip("tritium.core.model.loader")
    engine = pytest.importorskip("tritium.core.engine.generate")
    sampling = pytest.importorskip("tritium.core.sampling")
    compute = pytest.importorskip("tritium.core.compute")
    if not hasattr(compute, "Runtime"):
        pytest.skip("tritium.core.compute.Runtime is not implemented yet")
    model = loader.load_model(DEMO_GGUF)
    params = sampling.SamplingParams(temperature=0.0, max_tokens=32)
    chunks = list(engine.generate(model, "Once upon a time", params))
    words = _words("".join(c.text for c in chunks))
    assert len(words) >= 3
    assert sum(w.lower() in text_vocabulary for w in words) / len(words) >= 0.8, words


@pytest.mark.peer
def test_llama_cpp_reads_the_file(script, exported, text_vocabulary):
    """llama.cpp itself: same token ids as the training encoder, and greedy output that is words."""
    llama_cpp = pytest.importorskip("llama_cpp")
    meta, _ = exported
    enc = script.SpmEncoder(list(meta["tokenizer.ggml.tokens"]), list(meta["tokenizer.ggml.scores"]),
                            list(meta["tokenizer.ggml.token_type"]))
    llm = llama_cpp.Llama(str(DEMO_GGUF), n_ctx=512, n_threads=1, verbose=False, seed=0)
    train, heldout = script.split_paragraphs(TEXT.read_text(encoding="utf-8"))
    for text in train[::10] + heldout[::5]:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True)
        assert ids == [script.BOS_ID, *enc.encode(text)], text[:60]
    out = llm.create_completion("Once upon a time", max_tokens=32, temperature=0.0, top_k=1)
    words = _words(out["choices"][0]["text"])
    assert len(words) >= 3
    assert sum(w.lower() in text_vocabulary for w in words) / len(words) >= 0.8, words
