"""Packed HF BitNet weights -> ternary x scale written into the caller's array: numba == numpy twin ==
the inverse of transformers' pack_weights; a code-3 field is found and named; the source reads a packed
tensor straight into a given buffer."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from tritium.core.quantize.errors import QuantizeError
from tritium.core.quantize.hf_unpack import first_code_3, unpack_numba, unpack_numpy
from tritium.core.quantize.sources import open_source

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hf"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from hf_checkpoint import pack_hf, read_safetensors_numpy, write_safetensors  # noqa: E402, I001
from tiny_models import make_hf_folder  # noqa: E402


def test_unpack_twins_invert_pack_weights():
    rng = np.random.default_rng(13)
    t = rng.integers(-1, 2, (64, 96)).astype(np.int8)
    packed = pack_hf(t)
    s = np.float32(0.0371)
    a, b = np.empty((64, 96), np.float32), np.empty((64, 96), np.float32)
    assert not unpack_numba(packed, s, a).any() and not unpack_numpy(packed, s, b).any()
    assert np.array_equal(a, b) and np.array_equal(a, t.astype(np.float32) * s)
    packed[5, 7] |= 0b11 << 4  # code 3 in field 2
    assert unpack_numba(packed, s, a)[5] == 1 and unpack_numpy(packed, s, b)[5] == 1
    assert first_code_3(packed) == ([5, 7], 2)


def test_packed_source_reads_into_a_buffer_and_names_a_bad_byte(tmp_path):
    meant = make_hf_folder(tmp_path / "m", "packed")
    src = open_source(tmp_path / "m")
    w = meant["model.layers.1.mlp.up_proj.weight"]
    buf = np.full(w.shape, np.nan, np.float32)
    assert src.read("blk.1.ffn_up.weight", out=buf) is buf and np.array_equal(buf, w)
    tensors = read_safetensors_numpy(tmp_path / "m" / "model.safetensors")
    dtype, packed = tensors["model.layers.1.mlp.up_proj.weight"]
    packed = packed.copy()
    packed[2, 9] |= 0b11
    tensors["model.layers.1.mlp.up_proj.weight"] = (dtype, packed)
    write_safetensors(tmp_path / "m" / "model.safetensors", tensors)
    with pytest.raises(QuantizeError, match=r"packed byte \[2, 9\] holds code 3 in bits 0..1"):
        open_source(tmp_path / "m").read("blk.1.ffn_up.weight")
