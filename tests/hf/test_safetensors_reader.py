"""safetensors_reader: happy path against the `safetensors` library, and every kind of lying header."""

from __future__ import annotations

import json
import mmap
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritium.core.errors import ModelFormatError
from tritium.core.formats.safetensors_reader import (
    SafetensorsFile,
    bf16_to_float32,
    open_checkpoint,
    parse_header,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hf_checkpoint import bf16_round, safetensors_bytes, write_safetensors  # noqa: E402


def sample_tensors() -> dict[str, tuple[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return {
        "a.f32": ("F32", rng.normal(size=(3, 5)).astype(np.float32)),
        "b.f16": ("F16", rng.normal(size=(4,)).astype(np.float16)),
        "c.bf16": ("BF16", bf16_round(rng.normal(size=(2, 6)).astype(np.float32))),
        "d.u8": ("U8", rng.integers(0, 256, (7, 3), dtype=np.uint8)),
        "e.i64": ("I64", np.arange(5, dtype=np.int64)),
        "f.empty": ("F32", np.zeros((0, 4), dtype=np.float32)),
        "g.scalar": ("F32", np.array(2.5, dtype=np.float32)),
    }


def write(tmp_path: Path, data: bytes, name: str = "model.safetensors") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def lying(tmp_path: Path, header: dict, data: bytes = b"\0" * 16) -> Path:
    text = json.dumps(header).encode()
    return write(tmp_path, struct.pack("<Q", len(text)) + text + data)


def test_reads_every_dtype_as_views_matching_the_safetensors_library(tmp_path):
    from safetensors import safe_open

    tensors = sample_tensors()
    path = tmp_path / "model.safetensors"
    write_safetensors(path, tensors)
    f = SafetensorsFile(path)
    assert f.metadata == {"format": "pt"}
    with safe_open(str(path), framework="np") as peer_file:  # numpy has no bfloat16: skip that one
        peer = {k: peer_file.get_tensor(k) for k in tensors if tensors[k][0] != "BF16"}
    for name, (dtype, want) in tensors.items():
        got = f.array(name)
        assert f.entries[name].dtype == dtype
        assert got.shape == want.shape
        if dtype == "BF16":
            np.testing.assert_array_equal(bf16_to_float32(got), want)
            continue
        np.testing.assert_array_equal(got, peer[name])
        np.testing.assert_array_equal(got, want)
        if got.size:
            assert not got.flags.writeable
            base = got
            while getattr(base, "base", None) is not None and not isinstance(base, mmap.mmap):
                base = base.base
            base = base.obj if isinstance(base, memoryview) else base
            assert isinstance(base, mmap.mmap), "expected a view of the memory map, not a copy"


def test_checkpoint_float32_widens_bf16_exactly(tmp_path):
    write_safetensors(tmp_path / "model.safetensors", sample_tensors())
    ckpt = open_checkpoint(tmp_path)
    np.testing.assert_array_equal(ckpt.float32("c.bf16"), sample_tensors()["c.bf16"][1])
    assert ckpt.float32("a.f32").dtype == np.float32
    with pytest.raises(ModelFormatError, match="d.u8.*U8, expected a float dtype"):
        ckpt.float32("d.u8")
    with pytest.raises(ModelFormatError, match="no tensor 'nope'"):
        ckpt.array("nope")


def t(dtype: str = "F32", shape: list | None = None, offsets: list | None = None) -> dict:
    return {"dtype": dtype, "shape": [2] if shape is None else shape,
            "data_offsets": [0, 8] if offsets is None else offsets}


Z8, Z16 = b"\0" * 8, b"\0" * 16


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        ({"x": t(shape=[4], offsets=[0, 32])}, Z16, "outside the data section"),
        ({"x": t(shape=[4], offsets=[0, 12])}, Z16, "needs 16 bytes"),
        ({"x": t(), "y": t(offsets=[4, 12])}, b"\0" * 12, "'y'.*overlaps tensor 'x'"),
        ({"x": t(offsets=[8, 16])}, Z16, "'x' starts at byte 8.*hole"),
        ({"x": t()}, Z16, "cover 8 bytes.*has 16"),
        ({"x": t(dtype="Q4")}, Z8, "'x': dtype 'Q4'"),
        ({"x": t(shape=[-2])}, Z8, "'x': shape"),
        ({"x": t(shape=[2.0])}, Z8, "'x': shape"),
        ({"x": t(offsets=[0])}, Z8, "'x': data_offsets"),
        ({"x": t(offsets=[8, 0])}, Z8, "outside the data section"),
        ({"x": {"dtype": "F32", "shape": [2]}}, Z8, "'x': data_offsets"),
        ({"x": [1, 2]}, b"", "'x': expected an object"),
        ([1, 2], b"", "expected a JSON object, found list"),
        ({"__metadata__": {"k": 1}}, b"", "__metadata__ must be an object of strings"),
        ({"x": t(shape=[1 << 62, 1 << 62])}, Z8, "needs"),
    ],
)
def test_lying_headers_raise_model_format_error_naming_file_and_tensor(tmp_path, header, data, message):
    path = lying(tmp_path, header, data)
    with pytest.raises(ModelFormatError, match=message) as exc:
        SafetensorsFile(path)
    assert str(path) in str(exc.value)


def test_header_length_beyond_file_and_absurd_lengths(tmp_path):
    good = safetensors_bytes(sample_tensors())
    (n,) = struct.unpack("<Q", good[:8])
    cases = [(len(good), "runs past the end"), (1 << 63, "outside 2..100000000"), (0, "outside")]
    for bad_n, message in cases:
        path = write(tmp_path, struct.pack("<Q", bad_n) + good[8:])
        with pytest.raises(ModelFormatError, match=message):
            SafetensorsFile(path)
    with pytest.raises(ModelFormatError, match="too short"):
        SafetensorsFile(write(tmp_path, b"\x01\x02"))
    with pytest.raises(ModelFormatError, match="too short"):
        SafetensorsFile(write(tmp_path, b""))
    # Truncating the data section makes the tensors run past the end.
    with pytest.raises(ModelFormatError, match="outside the data section|cover"):
        SafetensorsFile(write(tmp_path, good[:-5]))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"{not json", "not valid UTF-8 JSON"),
        (b"\xff\xfe{}", "not valid UTF-8 JSON"),
        (b"[" * 100000 + b"]" * 100000, "not valid UTF-8 JSON"),
        (b'{"x": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}, "x": {}}', "duplicate key 'x'"),
    ],
)
def test_invalid_json_headers(tmp_path, text, message):
    path = write(tmp_path, struct.pack("<Q", len(text)) + text + b"\0" * 4)
    with pytest.raises(ModelFormatError, match=message):
        SafetensorsFile(path)


def make_sharded(tmp_path: Path) -> dict[str, tuple[str, np.ndarray]]:
    tensors = sample_tensors()
    names = list(tensors)
    write_safetensors(tmp_path / "s1.safetensors", {n: tensors[n] for n in names[:3]})
    write_safetensors(tmp_path / "s2.safetensors", {n: tensors[n] for n in names[3:]})
    index = {"metadata": {}, "weight_map": {n: ("s1.safetensors" if i < 3 else "s2.safetensors")
                                            for i, n in enumerate(names)}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    return tensors


def test_sharded_checkpoint_follows_the_index(tmp_path):
    tensors = make_sharded(tmp_path)
    ckpt = open_checkpoint(tmp_path)
    assert ckpt.index is not None and len(ckpt.files) == 2
    assert set(ckpt.owner) == set(tensors)
    np.testing.assert_array_equal(ckpt.array("d.u8"), tensors["d.u8"][1])
    assert ckpt.entry("e.i64").file.name == "s2.safetensors"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda ix: ix["weight_map"].update({"a.f32": "s2.safetensors"}),
         "maps tensor 'a.f32' to 's2.safetensors'"),
        (lambda ix: ix["weight_map"].update({"zz": "s3.safetensors"}),
         "shard 's3.safetensors'.*does not exist"),
        (lambda ix: ix["weight_map"].update({"zz": "../outside.safetensors"}),
         "points outside the model folder"),
        (lambda ix: ix["weight_map"].update({"zz": 7}), r"weight_map\['zz'\] must be a file name"),
        (lambda ix: ix.pop("weight_map"), "weight_map"),
    ],
)
def test_bad_index(tmp_path, mutate, message):
    make_sharded(tmp_path)
    index_path = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    mutate(index)
    index_path.write_text(json.dumps(index))
    with pytest.raises(ModelFormatError, match=message) as exc:
        open_checkpoint(tmp_path)
    assert "model.safetensors.index.json" in str(exc.value)


def test_index_not_json_and_missing_weights(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text("{oops")
    with pytest.raises(ModelFormatError, match="not a readable JSON file"):
        open_checkpoint(tmp_path)
    (tmp_path / "model.safetensors.index.json").unlink()
    with pytest.raises(ModelFormatError, match="neither model.safetensors nor"):
        open_checkpoint(tmp_path)


def test_parse_header_accepts_what_it_writes():
    header = b'{"t":{"dtype":"U8","shape":[2,2],"data_offsets":[0,4]}}'
    entries, meta = parse_header(header, 4, Path("x.safetensors"))
    assert entries["t"].shape == (2, 2) and entries["t"].begin == 8 + len(header) and meta == {}


VALID = safetensors_bytes(sample_tensors())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    flips=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.integers(0, len(VALID))),
)
def test_fuzzed_files_raise_only_model_format_error(tmp_path, flips, cut):
    data = bytearray(VALID)
    header_end = 8 + struct.unpack("<Q", VALID[:8])[0]
    for pos, value in flips:
        data[pos % header_end] = value  # mostly the header: that is where lies live
    if cut is not None:
        data = data[:cut]
    path = write(tmp_path, bytes(data), "fuzz.safetensors")
    try:
        f = SafetensorsFile(path)
    except ModelFormatError:
        return
    for name in f.entries:  # an accepted header must describe readable views
        arr = f.array(name)
        assert arr.shape == f.entries[name].shape
