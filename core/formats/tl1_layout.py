"""Tritium TL1 tensors (GGUF type id 38 in a file whose metadata says `tritium.tl1.layout =
"tritium-tl1-v1"`) -> the runtime `TernaryWeight`.

The layout (documented in plugins/quantizer_ternary/README.md, written by the `ternary` quantizer plugin)
uses bitnet.cpp's TL1 pair code — consecutive values (t0, t1) along K as the nibble 3*t0 + t1 + 4 — in a
fixed tiling that does not depend on per-shape codegen: tiles of 16 rows x 32 values, stored
[M/16][K/32][16 rows][8 bytes], byte b of a tile row = pair 2b (high nibble) | pair 2b+1 (low nibble);
then one float32 scale per tensor and 28 padding bytes (M*K/4 + 32 bytes in all, like I2_S).

The loader serves TL1 in place (`tl1_weight`): a `TL1Weight` whose tiles view the file, read by the
lookup-table kernel of core/compute/tl1_lut.py. `ternary_from_tl1` (the repack into compact 2-bit codes
in TQ2_0 plane order, in row chunks so the temporary memory stays small) remains for the quantizer's
sources and tests.
"""

from __future__ import annotations

import numpy as np
from tritium.core.errors import ModelFormatError
from tritium.core.model.weights import TQ2_PLANE_SHIFTS, TernaryWeight, TL1Weight

TL1_LAYOUT_KEY = "tritium.tl1.layout"
TL1_LAYOUT = "tritium-tl1-v1"
TL1_BM = 16
TL1_BK = 32
TL1_TAIL = 32
_CHUNK_TILE_ROWS = 256  # 4096 rows per repacking chunk


def tl1_nbytes(ne: tuple[int, ...]) -> int:
    """Bytes of a TL1 tensor of ggml shape ne = [K, M]: M*K/4 codes + 32 (scale, padding)."""
    n = 1
    for d in ne:
        n *= d
    return n // 4 + TL1_TAIL


def tl1_trits(raw: np.ndarray, M: int, K: int, rows: slice | None = None) -> np.ndarray:
    """int8 ternary values [M, K] (or the row range `rows`, aligned to 16) of TL1 bytes."""
    tiles = raw[:M * K // 4].reshape(M // TL1_BM, K // TL1_BK, TL1_BM, 8)
    if rows is not None:
        tiles = tiles[rows.start // TL1_BM: rows.stop // TL1_BM]
    m = tiles.shape[0] * TL1_BM
    byte = tiles.transpose(0, 2, 1, 3).reshape(m, K // 4)
    idx = np.empty((m, K // 2), np.uint8)
    idx[:, 0::2] = byte >> 4
    idx[:, 1::2] = byte & 15
    if (idx > 8).any():
        raise ValueError("pair index above 8")
    t = np.empty((m, K), np.int8)
    t[:, 0::2] = (idx // 3).astype(np.int8) - 1
    t[:, 1::2] = (idx % 3).astype(np.int8) - 1
    return t


def ternary_from_tl1(name: str, raw: np.ndarray, ne: tuple[int, ...]) -> TernaryWeight:
    """TL1 bytes -> TernaryWeight (compact TQ2_0-order codes, one float32 scale per tensor)."""
    from tritium.core.formats.runtime_layout import pack_tq2_codes

    K, M = _tl1_dims(name, ne)
    codes = np.empty((M, K // 4), np.uint8)
    step = _CHUNK_TILE_ROWS * TL1_BM
    for r0 in range(0, M, step):
        r1 = min(M, r0 + step)
        try:
            t = tl1_trits(raw, M, K, slice(r0, r1))
        except ValueError:
            raise ModelFormatError(f"tensor '{name}': TL1 pair index above 8 in rows {r0}..{r1} "
                                   "(corrupted data)") from None
        codes[r0:r1] = pack_tq2_codes(t)
    scale = np.float32(raw[M * K // 4:M * K // 4 + 4].view("<f4")[0])
    return TernaryWeight(name=name, out_features=M, in_features=K, codes=codes,
                         plane_shifts=TQ2_PLANE_SHIFTS,
                         block_scales=np.full((M, 1), scale, dtype=np.float32), scale_block=K)


def _tl1_dims(name: str, ne: tuple[int, ...]) -> tuple[int, int]:
    K = ne[0]
    M = 1
    for d in ne[1:]:
        M *= d
    if K % TL1_BK or M % TL1_BM:
        raise ModelFormatError(f"tensor '{name}': TL1 needs K % {TL1_BK} == 0 and M % {TL1_BM} == 0, "
                               f"found K={K}, M={M}")
    if K % 128:
        raise ModelFormatError(f"tensor '{name}': Tritium's runtime needs K % 128 == 0, found K={K}")
    return K, M


def tl1_weight(name: str, raw: np.ndarray, ne: tuple[int, ...]) -> TL1Weight:
    """TL1 bytes -> TL1Weight whose tiles view `raw` (no repack). Every nibble is checked once to be a
    pair index (0..8): the lookup-table kernel trusts them."""
    K, M = _tl1_dims(name, ne)
    n = M * K // 4
    tiles = raw[:n].reshape(M // TL1_BM, K // TL1_BK, TL1_BM, 8)
    step = _CHUNK_TILE_ROWS * TL1_BM * K // 4
    for b0 in range(0, n, step):
        chunk = raw[b0:min(n, b0 + step)]
        if ((chunk >> 4) > 8).any() or ((chunk & 15) > 8).any():
            r0, r1 = b0 * 4 // K, min(M, (b0 + step) * 4 // K)
            raise ModelFormatError(f"tensor '{name}': TL1 pair index above 8 in rows {r0}..{r1} "
                                   "(corrupted data)")
    scale = np.float32(raw[n:n + 4].view("<f4")[0])
    return TL1Weight(name=name, out_features=M, in_features=K, codes=None, plane_shifts=TQ2_PLANE_SHIFTS,
                     block_scales=np.full((M, 1), scale, dtype=np.float32), scale_block=K, tiles=tiles)
