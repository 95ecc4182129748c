"""Malformed, truncated and unsupported GGUF files: every one is a ModelFormatError naming the culprit."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from gguf_test_files import BITNETCPP_FIXTURES, rewritten, tiny_config, write_tiny
from tritium.core.errors import ModelFormatError
from tritium.core.formats.ggml_encode import encode_tensor
from tritium.core.formats.gguf_model import read_gguf_model
from tritium.core.formats.gguf_reader import read_gguf
from tritium.core.formats.gguf_writer import TensorPlan, write_gguf
from tritium.core.model.loader import load_model


@pytest.fixture(scope="module")
def tq2(tmp_path_factory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("bad") / "tq2.gguf", "TQ2_0")


@pytest.fixture(scope="module")
def dense(tmp_path_factory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("bad") / "f32.gguf", "F32")


def patched(src: Path, dst: Path, at: int, new: bytes) -> Path:
    data = bytearray(src.read_bytes())
    data[at:at + len(new)] = new
    dst.write_bytes(bytes(data))
    return dst


def key_value_at(path: Path, key: str) -> int:
    """Byte offset of the value type (u32) that follows metadata key `key`."""
    data = path.read_bytes()
    k = key.encode()
    i = data.find(struct.pack("<Q", len(k)) + k)
    assert i >= 0
    return i + 8 + len(k)


def tensor_info_at(path: Path, name: str) -> dict[str, int]:
    """Byte offsets of the fields of tensor `name`'s info."""
    data = path.read_bytes()
    n = name.encode()
    i = data.find(struct.pack("<Q", len(n)) + n)
    assert i >= 0
    dims = i + 8 + len(n)
    n_dims = struct.unpack_from("<I", data, dims)[0]
    typ = dims + 4 + 8 * n_dims
    return {"name": i + 8, "n_dims": dims, "ne": dims + 4, "type": typ, "offset": typ + 4}


def expect_error(path: Path, *fragments: str, reader=read_gguf_model) -> str:
    with pytest.raises(ModelFormatError) as e:
        reader(path)
    msg = str(e.value)
    assert str(path) in msg, msg
    for frag in fragments:
        assert frag in msg, (frag, msg)
    return msg


def test_valid_files_load(tq2, dense):
    assert read_gguf_model(tq2).config.act_quant == "q8_k"
    assert read_gguf_model(dense).config.act_quant == "none"


def test_truncated_at_many_cut_points(tq2, tmp_path):
    f = read_gguf(tq2)
    data = tq2.read_bytes()
    end = max(t.file_offset + t.nbytes for t in f.tensors.values())
    cuts = set(range(0, f.data_offset + 64, 97)) | set(range(f.data_offset, end, max(1, end // 40)))
    cuts |= {0, 3, 4, 7, 8, 23, 24, f.data_offset - 1, f.data_offset, end - 1}
    out = tmp_path / "cut.gguf"
    for cut in sorted(cuts):
        out.write_bytes(data[:cut])
        expect_error(out)


def test_wrong_magic(tq2, tmp_path):
    expect_error(patched(tq2, tmp_path / "m.gguf", 0, b"GGUX"), "magic", "b'GGUX'")


@pytest.mark.parametrize("version", [1, 99, 0])
def test_unsupported_version(tq2, tmp_path, version):
    expect_error(patched(tq2, tmp_path / "v.gguf", 4, struct.pack("<I", version)), "version",
                 f"found {version}")


def test_big_endian_file(tq2, tmp_path):
    expect_error(patched(tq2, tmp_path / "be.gguf", 4, struct.pack(">I", 3)), "big-endian")


@pytest.mark.parametrize("type_id", [33, 200, 2**31])
def test_unknown_tensor_type_id(tq2, tmp_path, type_id):
    at = tensor_info_at(tq2, "blk.0.attn_q.weight")["type"]
    expect_error(patched(tq2, tmp_path / "t.gguf", at, struct.pack("<I", type_id)),
                 "blk.0.attn_q.weight", f"unknown ggml tensor type id {type_id}")


@pytest.mark.parametrize("type_id,what", [(39, "TL2"), (38, "TL1"), (37, "I8_S")])
def test_bitnetcpp_tl_and_i8s_ids_are_rejected_with_a_reason(tmp_path, type_id, what):
    src = BITNETCPP_FIXTURES / "bitnet-b158-tiny.i2_s.gguf"
    at = tensor_info_at(src, "blk.1.ffn_up.weight")["type"]
    msg = expect_error(patched(src, tmp_path / "tl.gguf", at, struct.pack("<I", type_id)),
                       "blk.1.ffn_up.weight", what)
    if what.startswith("TL"):
        assert "bitnet-b1.58" in msg and "I2_S" in msg  # why it is TL, and what to convert to


def test_id_39_outside_bitnetcpp_files_is_upstream_mxfp4(dense, tmp_path):
    at = tensor_info_at(dense, "blk.0.attn_q.weight")["type"]
    path = patched(dense, tmp_path / "mx.gguf", at, struct.pack("<I", 39))
    f = read_gguf(path)
    assert f.tensors["blk.0.attn_q.weight"].type.name == "MXFP4"
    assert any("MXFP4" in line for line in f.interpretation)
    expect_error(path, "blk.0.attn_q.weight", "MXFP4", "not supported for a linear weight")


def test_tensor_offset_past_end_of_file(tq2, tmp_path):
    at = tensor_info_at(tq2, "output_norm.weight")["offset"]
    expect_error(patched(tq2, tmp_path / "o.gguf", at, struct.pack("<Q", 1 << 40)),
                 "output_norm.weight", "inside the file")


def test_misaligned_and_overlapping_offsets(tq2, tmp_path):
    info = tensor_info_at(tq2, "blk.0.attn_k.weight")
    off = read_gguf(tq2).tensors["blk.0.attn_k.weight"].offset
    expect_error(patched(tq2, tmp_path / "a.gguf", info["offset"], struct.pack("<Q", off + 4)),
                 "blk.0.attn_k.weight", "alignment")
    expect_error(patched(tq2, tmp_path / "b.gguf", info["offset"], struct.pack("<Q", 0)),
                 "blk.0.attn_k.weight", "overlaps")


@pytest.mark.parametrize("field", ["ne0_zero", "n_dims", "huge_ne"])
def test_bad_tensor_dimensions(tq2, tmp_path, field):
    info = tensor_info_at(tq2, "blk.0.ffn_up.weight")
    at, new, frag = {
        "ne0_zero": (info["ne"], struct.pack("<Q", 0), ">= 1"),
        "n_dims": (info["n_dims"], struct.pack("<I", 5), "dimension count"),
        "huge_ne": (info["ne"], struct.pack("<QQ", 1 << 40, 1 << 40), "elements"),
    }[field]
    expect_error(patched(tq2, tmp_path / "d.gguf", at, new), "blk.0.ffn_up.weight", frag)


def test_huge_string_length(tq2, tmp_path):
    # the first key's length field sits right after the 24-byte header
    expect_error(patched(tq2, tmp_path / "s.gguf", 24, struct.pack("<Q", 1 << 60)), "metadata key #0",
                 "more bytes")
    at = key_value_at(tq2, "general.name") + 4
    expect_error(patched(tq2, tmp_path / "s2.gguf", at, struct.pack("<Q", 1 << 60)), "general.name")


def test_huge_array_count(tq2, tmp_path):
    at = key_value_at(tq2, "tokenizer.ggml.tokens") + 8  # after value type and element type
    msg = expect_error(patched(tq2, tmp_path / "a.gguf", at, struct.pack("<Q", 1 << 60)),
                       "tokenizer.ggml.tokens", "element count")
    assert str(1 << 60) in msg
    at = key_value_at(tq2, "tokenizer.ggml.scores") + 8
    expect_error(patched(tq2, tmp_path / "b.gguf", at, struct.pack("<Q", 1 << 60)), "tokenizer.ggml.scores")


def test_huge_counts_in_header(tq2, tmp_path):
    expect_error(patched(tq2, tmp_path / "n.gguf", 8, struct.pack("<Q", 1 << 60)), "tensor count")
    expect_error(patched(tq2, tmp_path / "k.gguf", 16, struct.pack("<Q", 1 << 60)), "key/value count")


def test_bad_value_type_and_bool(tq2, tmp_path):
    at = key_value_at(tq2, "general.file_type")
    expect_error(patched(tq2, tmp_path / "t.gguf", at, struct.pack("<I", 13)), "general.file_type",
                 "value type")
    at = key_value_at(tq2, "tokenizer.ggml.add_bos_token")
    expect_error(patched(tq2, tmp_path / "b.gguf", at + 4, b"\x07"), "add_bos_token", "bool")


def test_bad_utf8_key(tq2, tmp_path):
    expect_error(patched(tq2, tmp_path / "u.gguf", 32, b"\xff"), "metadata key #0", "UTF-8")


def test_deeply_nested_array(tmp_path):
    deep: object = [1]
    for _ in range(9):
        deep = [deep]
    plan = TensorPlan("x", (4,), "F32", lambda: np.zeros(4, np.float32).view(np.uint8))
    path = tmp_path / "deep.gguf"
    write_gguf(path, "test", {"deep": deep}, [plan], value_types={"deep": "array[array]"})
    expect_error(path, "deep", "nested", reader=read_gguf)


def test_bad_alignment(tq2, tmp_path):
    expect_error(rewritten(tq2, tmp_path / "a.gguf", meta={"general.alignment": 3}), "general.alignment",
                 "power of two")


def test_missing_tensor(tq2, tmp_path):
    expect_error(rewritten(tq2, tmp_path / "m.gguf", tensors={"blk.0.ffn_sub_norm.weight": None}),
                 "'blk.0.ffn_sub_norm.weight'", "missing")
    # a renamed tensor (same length) is both missing and unexpected; the missing one is named
    at = tensor_info_at(tq2, "output_norm.weight")["name"]
    expect_error(patched(tq2, tmp_path / "r.gguf", at, b"output_norX.weight"), "'output_norm.weight'",
                 "missing")


def test_unexpected_tensor(tq2, tmp_path):
    extra = TensorPlan("blk.0.rope_freqs.weight", (4,), "F32", lambda: np.zeros(4, np.float32).view(np.uint8))
    expect_error(rewritten(tq2, tmp_path / "x.gguf", tensors={"extra": extra}), "blk.0.rope_freqs.weight",
                 "unexpected")


def test_wrong_shape(tq2, tmp_path):
    cfg = tiny_config()
    bad = np.ones((cfg.n_embd_kv * 2, cfg.n_embd), np.float32)
    plan = TensorPlan("blk.0.attn_k.weight", bad.shape, "TQ2_0", lambda: encode_tensor(bad, "TQ2_0"))
    msg = expect_error(rewritten(tq2, tmp_path / "s.gguf", tensors={"blk.0.attn_k.weight": plan}),
                       "'blk.0.attn_k.weight'", "expected ggml shape [256, 128]", "found [256, 256]")
    assert "kv width 128" in msg


def test_shape_mismatch_from_metadata(tq2, tmp_path):
    at = key_value_at(tq2, "bitnet.feed_forward_length") + 4
    expect_error(patched(tq2, tmp_path / "f.gguf", at, struct.pack("<I", 512)), "blk.0.ffn_gate.weight",
                 "expected ggml shape [256, 512]", "found [256, 256]")


def test_mixed_linear_families(tq2, tmp_path):
    w = np.ones((256, 256), np.float32)
    plan = TensorPlan("blk.0.attn_q.weight", (256, 256), "I2_S", lambda: encode_tensor(w, "I2_S"))
    expect_error(rewritten(tq2, tmp_path / "mix.gguf", tensors={"blk.0.attn_q.weight": plan}),
                 "blk.0.attn_k.weight", "one family", "found TQ2_0")


def test_unsupported_embedding_type(tq2, tmp_path):
    e = np.ones((300, 256), np.float32)
    plan = TensorPlan("token_embd.weight", (300, 256), "TQ2_0", lambda: encode_tensor(e, "TQ2_0"))
    expect_error(rewritten(tq2, tmp_path / "e.gguf", tensors={"token_embd.weight": plan}),
                 "token_embd.weight", "TQ2_0", "not supported")


def test_corrupted_scale_is_rejected(tq2, tmp_path):
    t = read_gguf(tq2).tensors["blk.0.attn_v.weight"]
    expect_error(patched(tq2, tmp_path / "nan.gguf", t.file_offset + 64, np.float16(np.nan).tobytes()),
                 "blk.0.attn_v.weight", "finite")


@pytest.mark.parametrize("change,fragments", [
    ({"general.architecture": "llama"}, ("general.architecture", "'llama'", "not supported")),
    ({"bitnet.attention.head_count_kv": 3}, ("head_count_kv", "divisor")),
    ({"bitnet.embedding_length": "256"}, ("bitnet.embedding_length", "integer", "string")),
    ({"bitnet.rope.scaling.type": "yarn"}, ("rope.scaling", "yarn")),
    ({"bitnet.rope.dimension_count": 65}, ("rope.dimension_count",)),
    ({"bitnet.attention.layer_norm_rms_epsilon": -1.0}, ("layer_norm_rms_epsilon", "> 0")),
])
def test_unsupported_or_invalid_config(tq2, tmp_path, change, fragments):
    arch = change.get("general.architecture")
    expect_error(rewritten(tq2, tmp_path / "c.gguf", meta=change, arch=arch), *fragments)


def test_required_key_missing(tq2, tmp_path):
    expect_error(rewritten(tq2, tmp_path / "k.gguf", drop_meta=("bitnet.attention.layer_norm_rms_epsilon",)),
                 "bitnet.attention.layer_norm_rms_epsilon", "missing")


def test_optional_keys_take_their_defaults(tmp_path):
    mha = write_tiny(tmp_path / "mha.gguf", "TQ2_0", config=tiny_config(n_head_kv=4))
    m = read_gguf_model(rewritten(mha, tmp_path / "d.gguf", drop_meta=(
        "bitnet.attention.head_count_kv", "bitnet.rope.dimension_count", "bitnet.rope.freq_base")))
    assert m.config.n_head_kv == m.config.n_head and m.config.n_rot == m.config.head_dim
    assert m.config.rope_base == 10000.0


def test_loader_rejects_what_is_not_a_model(tmp_path):
    with pytest.raises(ModelFormatError, match="no such file"):
        load_model(tmp_path / "nope.gguf")
    with pytest.raises(ModelFormatError, match="config.json"):
        load_model(tmp_path)
    (tmp_path / "x.bin").write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ModelFormatError, match="GGUF"):
        load_model(tmp_path / "x.bin")
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(ModelFormatError):
        load_model(tmp_path / "empty.gguf")
    (tmp_path / "short.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    with pytest.raises(ModelFormatError, match="24 header bytes"):
        load_model(tmp_path / "short.gguf")
