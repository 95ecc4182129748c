"""GGUF tensor bytes -> the runtime layouts of `core/model/weights.py`.

Ternary matrices become `TernaryWeight` (2-bit codes in 128-value groups, see its docstring):

* I2_S: the codes *are* that layout (planes at shifts 6,4,2,0), so `codes` is a view of the file
  [M, K/4]; the one per-tensor float32 scale becomes block_scales [M, 1] with scale_block = K.
* TQ2_0: each 256-value block is `qs[64], fp16 d`; qs[32h + m] bit pair l is element 128h + 32l + m, so
  every 32-byte half of qs is one group with planes at shifts 0,2,4,6. The 2-byte d between blocks makes a
  2-D [M, K/4] view impossible (rows are runs of 64 bytes 66 bytes apart), so the qs bytes are copied
  ONCE at load into a compact uint8 [M, K/4] array (2 bits/weight, 3% smaller than the file's tensor);
  block_scales = d as float32 [M, K/256], scale_block = 256.
* TQ1_0: base-3 packing has no 2-bit view; it is repacked once at load into the TQ2_0 code order
  (shifts 0,2,4,6), so TQ1_0 and TQ2_0 files of the same weights give identical `TernaryWeight`s.
* TL1 (Tritium's tiles, core/formats/tl1_layout.py): a `TL1Weight` whose tiles view the file, served by
  the lookup-table kernel of core/compute/tl1_lut.py (no 2-bit codes).

Float tensors (embeddings, norms, dense linears): F32/F16 stay views of the file; BF16 and Q8_0 are
dequantized to float32 once.
"""

from __future__ import annotations

import numpy as np
from gguf.constants import GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize
from tritium.core.formats.file_pages import release_file_pages
from tritium.core.formats.ggml_dequant import (
    TQ1_0_BLOCK_BYTES,
    TQ2_0_BLOCK_BYTES,
    dequant_bf16,
    dequant_q8_0,
    tq1_0_trits,
)
from tritium.core.formats.ggml_types import QK_K
from tritium.core.model.weights import I2S_PLANE_SHIFTS, TQ2_PLANE_SHIFTS, TernaryWeight

TERNARY_TYPES = ("I2_S", "TQ2_0", "TQ1_0", "TL1")
FLOAT_TYPES = ("F32", "F16", "BF16", "Q8_0")
# Block types llama-quantize gives token_embd/output (e.g. Q4_K for TQ1_0/TQ2_0 files): dequantized to
# float32 once with gguf-py's reference dequantizers; accepted for embeddings and the lm_head only.
EMBEDDING_EXTRA_TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
_REPACK_ROWS_BYTES = 1 << 24  # bound the temporaries of TQ1_0 repacking to ~16 MB of trits


def _matrix_dims(ne: tuple[int, ...]) -> tuple[int, int]:
    """(K, M) = (input features, output rows) of a ggml shape (extra dims fold into rows)."""
    m = 1
    for d in ne[1:]:
        m *= d
    return ne[0], m


def ternary_from_i2s(name: str, raw: np.ndarray, ne: tuple[int, ...]) -> TernaryWeight:
    """I2_S bytes (K*M/4 codes + float32 scale + 28 padding) -> TernaryWeight whose codes view `raw`."""
    K, M = _matrix_dims(ne)
    n = K * M // 4
    codes = raw[:n].reshape(M, K // 4)
    scale = np.float32(raw[n:n + 4].view("<f4")[0])
    return TernaryWeight(name=name, out_features=M, in_features=K, codes=codes,
                         plane_shifts=I2S_PLANE_SHIFTS,
                         block_scales=np.full((M, 1), scale, dtype=np.float32), scale_block=K)


def ternary_from_tq2_0(name: str, raw: np.ndarray, ne: tuple[int, ...]) -> TernaryWeight:
    """TQ2_0 bytes -> TernaryWeight with compact codes (one copy of the qs bytes) and fp16 d as float32."""
    K, M = _matrix_dims(ne)
    nblk = K // QK_K
    blocks = raw.reshape(M, nblk, TQ2_0_BLOCK_BYTES)
    codes = np.ascontiguousarray(blocks[:, :, :64]).reshape(M, K // 4)
    d = np.ascontiguousarray(blocks[:, :, 64:66]).view("<f2").reshape(M, nblk).astype(np.float32)
    release_file_pages(raw)  # the compact copy replaces the file bytes; don't keep both resident
    return TernaryWeight(name=name, out_features=M, in_features=K, codes=codes,
                         plane_shifts=TQ2_PLANE_SHIFTS, block_scales=d, scale_block=QK_K)


def pack_tq2_codes(trits: np.ndarray) -> np.ndarray:
    """int8 ternary [M, K] (K % 128 == 0) -> uint8 codes [M, K/4] in the TQ2_0 order: byte j of each
    128-value group holds values j, 32+j, 64+j, 96+j at shifts 0, 2, 4, 6."""
    M, K = trits.shape
    c = (trits.astype(np.int16) + 1).astype(np.uint8).reshape(M, K // 128, 4, 32)
    return (c[:, :, 0] | (c[:, :, 1] << 2) | (c[:, :, 2] << 4) | (c[:, :, 3] << 6)).reshape(M, K // 4)


def ternary_from_tq1_0(name: str, raw: np.ndarray, ne: tuple[int, ...]) -> TernaryWeight:
    """TQ1_0 bytes -> TernaryWeight repacked once into compact TQ2_0-order codes (row chunks bound the
    temporary memory)."""
    K, M = _matrix_dims(ne)
    nblk = K // QK_K
    blocks = raw.reshape(M, nblk * TQ1_0_BLOCK_BYTES)
    codes = np.empty((M, K // 4), dtype=np.uint8)
    d = np.empty((M, nblk), dtype=np.float32)
    step = max(1, _REPACK_ROWS_BYTES // K)
    for r0 in range(0, M, step):
        r1 = min(M, r0 + step)
        t, dd = tq1_0_trits(blocks[r0:r1].reshape(-1), (r1 - r0) * nblk)
        codes[r0:r1] = pack_tq2_codes(t.reshape(r1 - r0, K))
        d[r0:r1] = dd.reshape(r1 - r0, nblk)
    release_file_pages(raw)
    return TernaryWeight(name=name, out_features=M, in_features=K, codes=codes,
                         plane_shifts=TQ2_PLANE_SHIFTS, block_scales=d, scale_block=QK_K)


def _ternary_from_tl1(name: str, raw: np.ndarray, ne: tuple[int, ...]) -> TernaryWeight:
    from tritium.core.formats.tl1_layout import tl1_weight  # Tritium TL1: tiles served in place (LUT kernel)

    return tl1_weight(name, raw, ne)


TERNARY_DECODERS = {"I2_S": ternary_from_i2s, "TQ2_0": ternary_from_tq2_0, "TQ1_0": ternary_from_tq1_0,
                    "TL1": _ternary_from_tl1}


def ternary_weight(name: str, type_name: str, raw: np.ndarray, ne: tuple[int, ...]) -> TernaryWeight:
    """The runtime TernaryWeight of a ternary GGUF tensor (type_name in TERNARY_TYPES)."""
    return TERNARY_DECODERS[type_name](name, raw, ne)


def float_tensor(type_name: str, raw: np.ndarray, ne: tuple[int, ...]) -> np.ndarray:
    """A float tensor in numpy order: F32/F16 as views of `raw`; BF16, Q8_0 and EMBEDDING_EXTRA_TYPES
    dequantized to float32 (one copy)."""
    shape = tuple(reversed(ne))
    if type_name == "F32":
        return raw.view("<f4").reshape(shape)
    if type_name == "F16":
        return raw.view("<f2").reshape(shape)
    if type_name == "BF16":
        return dequant_bf16(raw, ne)
    if type_name == "Q8_0":
        return dequant_q8_0(raw, ne)
    if type_name in EMBEDDING_EXTRA_TYPES:
        rows = raw.reshape(int(np.prod(shape[:-1], dtype=np.int64)), -1)  # whole blocks per row
        return gguf_dequantize(rows, GGMLQuantizationType[type_name]).astype(np.float32).reshape(shape)
    raise ValueError(f"not a float type: {type_name}")
