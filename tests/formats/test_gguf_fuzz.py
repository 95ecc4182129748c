"""Property test: mutated GGUF files either load or raise ModelFormatError — nothing else escapes
(no numpy/struct/Unicode/Key errors, no huge allocation, no hang)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from gguf_test_files import write_tiny
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritium.core.errors import ModelFormatError
from tritium.core.formats.gguf_model import read_gguf_model
from tritium.core.formats.gguf_reader import read_gguf

TYPES = ("TQ2_0", "I2_S", "TQ1_0")


def header_fields(raw: bytes) -> list[tuple[int, int]]:
    """(offset, width) of every length, count, type, dimension and offset field in a valid GGUF header
    (an independent little walker, so that the fuzzer can aim at the fields a reader must distrust)."""
    fields = [(4, 4), (8, 8), (16, 8)]
    n_tensors, n_kv = struct.unpack_from("<QQ", raw, 8)
    off = 24
    scalar = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def string(off: int) -> int:
        fields.append((off, 8))
        return off + 8 + struct.unpack_from("<Q", raw, off)[0]

    def value(vtype: int, off: int, depth: int) -> int:
        if vtype == 8:
            return string(off) if depth == 0 else off + 8 + struct.unpack_from("<Q", raw, off)[0]
        if vtype == 9:
            etype, count = struct.unpack_from("<IQ", raw, off)
            fields.extend([(off, 4), (off + 4, 8)])
            off += 12
            for _ in range(count):
                off = value(etype, off, depth + 1)
            return off
        return off + scalar[vtype]

    for _ in range(n_kv):
        off = string(off)
        fields.append((off, 4))
        off = value(struct.unpack_from("<I", raw, off)[0], off + 4, 0)
    for _ in range(n_tensors):
        off = string(off)
        n_dims = struct.unpack_from("<I", raw, off)[0]
        fields.extend([(off, 4)] + [(off + 4 + 8 * d, 8) for d in range(n_dims)])
        off += 4 + 8 * n_dims
        fields.extend([(off, 4), (off + 4, 8)])
        off += 12
    return fields


@st.composite
def mutations(draw, source: bytes, fields: list[tuple[int, int]]):
    """1-4 edits: a header field overwritten with a boundary value or a nearby number, a random byte,
    a cut, a deletion or an insertion anywhere, or a corrupted fp16/fp32 in the tensor data."""
    data = bytearray(source)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        kind = draw(st.sampled_from(["field", "field", "near", "byte", "truncate", "delete", "insert"]))
        if kind in ("field", "near"):
            pos, width = draw(st.sampled_from(fields))
            old = int.from_bytes(data[pos:pos + width], "little")
            if kind == "field":
                new = draw(st.sampled_from([0, 1, 2 ** (8 * width) - 1, 2 ** (8 * width - 1), 36, 37, 38,
                                            39, 12, 13, 1 << (8 * width - 4), 2**31]))
            else:
                new = old + draw(st.integers(-300, 300))
            data[pos:pos + width] = (new % 2 ** (8 * width)).to_bytes(width, "little")
            continue
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "byte":
            data[pos] = draw(st.sampled_from([0x00, 0x7C, 0xFC, 0xFF, 0x80])) if draw(st.booleans()) \
                else draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def _check(data: bytes, path: Path) -> None:
    path.write_bytes(data)
    try:
        m = read_gguf_model(path)
    except ModelFormatError as e:
        assert str(path) in str(e)
        return
    assert read_gguf(path).tensors  # the plain reader agrees
    # a surviving file must be usable: every weight decodes to finite values
    for layer in m.weights.layers:
        for lin in layer.linears().values():
            assert np.isfinite(lin.dequantize()).all()
    assert m.weights.token_embd.shape == (m.config.n_vocab, m.config.n_embd)


@pytest.mark.parametrize("ttype", TYPES)
def test_mutated_files_raise_only_model_format_error(ttype, tmp_path):
    source = write_tiny(tmp_path / f"{ttype}.gguf", ttype)
    fields = header_fields(source.read_bytes())

    @settings(max_examples=120, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(mutations(source.read_bytes(), fields))
    def run(data: bytes) -> None:
        _check(data, tmp_path / "mutated.gguf")

    run()
