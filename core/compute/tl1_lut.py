"""y[T, out] = W · x for a Tritium TL1 matrix (`TL1Weight`), read in place through lookup tables.

The TL1 code (bitnet.cpp's) stores two consecutive weights (t0, t1) along K as one nibble
3*t0 + t1 + 4. So for each token and each activation pair (x0, x1) = (q[2p], q[2p+1]) the nine sums
t0*x0 + t1*x1 are tabulated once (int16, |sum| <= 256; the table row is padded to 16 entries), and a
weight row's dot product is one table read per nibble: Σ_p lut[p, nibble_p]. That sum is exactly the
plain ternary integer dot product Σ t·q.

The tiles ([M/16][K/32][16 rows][8 bytes], see core/formats/tl1_layout.py) are read in file order: a
work item owns a 16-row tile row and walks its K/32 tiles, each 128 contiguous bytes, keeping 16 int32
row sums. Tokens are taken in chunks of `TOKEN_CHUNK` (one table per token of the chunk), each tile row
serving every token of the chunk while its bytes are hot.

Float part: the per-token activation scale a (i8_s, absmax_token: one scale per token and row), the
per-tensor weight scale d_w and the optional tensor_scale ts, operation for operation as
ternary_matmul's i8_s path: ``y = (0 + float32(float32(isum) / a) · d_w) · ts`` in float32, so a TL1
file gives bit for bit the logits of the I2_S file of the same weights.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from tritium.core.model.weights import TL1Weight

TOKEN_CHUNK = 16  # tokens whose tables are built together (K=6912: 16 x 3456 x 16 x 2 B = 1.7 MB)
LUT_WIDTH = 16  # 9 pair sums, padded so a table row is 32 bytes


def _check(w: TL1Weight, q: np.ndarray, act_scales: np.ndarray, out: np.ndarray) -> None:
    if w.tiles is None or w.tiles.dtype != np.uint8 or w.tiles.ndim != 4 or w.tiles.shape[2:] != (16, 8):
        raise ValueError(f"{w.name}: TL1 tiles must be uint8 [M/16, K/32, 16, 8]")
    if w.tiles.shape[:2] != ((w.out_features + 15) // 16, w.in_features // 32):
        raise ValueError(f"{w.name}: TL1 tiles {w.tiles.shape} do not hold {w.out_features}x{w.in_features}")
    if q.ndim != 2 or q.dtype != np.int8 or q.shape[1] != w.in_features:
        raise ValueError(f"{w.name}: activations must be int8 [T, {w.in_features}], got {q.dtype} {q.shape}")
    if act_scales.shape[0] != q.shape[0]:
        raise ValueError(f"{w.name}: {act_scales.shape[0]} activation scales for {q.shape[0]} tokens")
    if out.shape != (q.shape[0], w.out_features) or out.dtype != np.float32:
        raise ValueError(f"{w.name}: out must be float32 {(q.shape[0], w.out_features)}, got "
                         f"{out.dtype} {out.shape}")


# ------------------------------------------------------------------------------------------------
# numpy twin
# ------------------------------------------------------------------------------------------------
def pair_luts_numpy(q: np.ndarray) -> np.ndarray:
    """int16 [T, K/2, 9]: entry 3*t0 + t1 + 4 of pair p is t0*q[2p] + t1*q[2p+1]."""
    x = q.astype(np.int16)
    t0 = np.repeat(np.arange(-1, 2, dtype=np.int16), 3)
    t1 = np.tile(np.arange(-1, 2, dtype=np.int16), 3)
    return x[:, 0::2, None] * t0 + x[:, 1::2, None] * t1


def tl1_matmul_numpy(w: TL1Weight, q: np.ndarray, act_scales: np.ndarray, out: np.ndarray) -> None:
    """out[T, out_features] = W · x with int8 activations q [T, K] whose values are q / act_scales[t]
    (act_scales float32 [T] or [T, 1]): the same tables and float steps as `tl1_matmul_numba`, plainly."""
    _check(w, q, act_scales, out)
    assert w.tiles is not None
    m, k = w.out_features, w.in_features
    t = q.shape[0]
    lut = pair_luts_numpy(q).astype(np.int32)
    pairs = np.arange(k // 2)[None, :]
    da = act_scales.reshape(t).astype(np.float32)[:, None]
    ts = np.float32(w.tensor_scale)
    rows = max(16, (1 << 22) // max(1, t * k) // 16 * 16)  # bound the gathered [T, rows, K/2] temporary
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)
        byte = w.tiles[r0 // 16:(r1 + 15) // 16].transpose(0, 2, 1, 3).reshape(-1, k // 4)[:r1 - r0]
        nib = np.empty((r1 - r0, k // 2), np.intp)
        nib[:, 0::2] = byte >> 4
        nib[:, 1::2] = byte & 15
        isum = lut[:, pairs, nib].sum(axis=2)  # [T, rows]
        dw = w.block_scales[r0:r1, 0].astype(np.float32)[None, :]
        y = np.zeros((t, r1 - r0), np.float32)
        y = (y + (isum.astype(np.float32) / da).astype(np.float32) * dw).astype(np.float32)
        out[:, r0:r1] = y * ts


# ------------------------------------------------------------------------------------------------
# numba kernel
# ------------------------------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _build_luts(q, t0, nt, lut):  # noqa: ANN001
    """lut[i, p, 3*u + v] = (u-1)*q[t0+i, 2p] + (v-1)*q[t0+i, 2p+1] for the nt tokens from t0."""
    n_pairs = q.shape[1] // 2
    for i in prange(nt):
        x = q[t0 + i]
        tab = lut[i]
        for p in range(n_pairs):
            a = np.int16(x[2 * p])
            b = np.int16(x[2 * p + 1])
            row = tab[p]
            row[0] = -a - b
            row[1] = -a
            row[2] = b - a
            row[3] = -b
            row[4] = 0
            row[5] = b
            row[6] = a - b
            row[7] = a
            row[8] = a + b


@njit(parallel=True, cache=True)
def _lut_kernel(tiles, m, lut, t0, nt, act_scales, dws, ts, out):  # noqa: ANN001
    """out[t0+i, r] for the nt tokens of the chunk and every row r: one table read per nibble."""
    n_mt = tiles.shape[0]
    n_kt = tiles.shape[1] // 128
    for mt in prange(n_mt):
        src = tiles[mt]
        acc = np.zeros(16, np.int32)
        for i in range(nt):
            tab = lut[i]
            for r in range(16):
                acc[r] = 0
            for kt in range(n_kt):
                base = kt * 128
                p0 = kt * 16
                for r in range(16):
                    s = np.int32(0)
                    o = base + r * 8
                    for b in range(8):
                        c = src[o + b]
                        s += tab[p0 + 2 * b, c >> 4] + tab[p0 + 2 * b + 1, c & 15]
                    acc[r] += s
            da = act_scales[t0 + i]
            for r in range(16):
                row = mt * 16 + r
                if row < m:
                    y = np.float32(0.0)
                    y += np.float32(np.float32(acc[r]) / da) * dws[row]
                    out[t0 + i, row] = y * ts


def tl1_matmul_numba(w: TL1Weight, q: np.ndarray, act_scales: np.ndarray, out: np.ndarray) -> None:
    """Numba twin of `tl1_matmul_numpy` (bit-identical results): the tiles are read in place, the tables
    built once per token, rows spread over numba's threads one 16-row tile row at a time."""
    _check(w, q, act_scales, out)
    assert w.tiles is not None
    t, k = q.shape
    tiles = w.tiles.reshape(w.tiles.shape[0], -1)  # a view: [M/16, K/32 * 128] bytes in file order
    scales = np.ascontiguousarray(act_scales.reshape(t), dtype=np.float32)
    dws = np.ascontiguousarray(w.block_scales[:, 0], dtype=np.float32)
    ts = np.float32(w.tensor_scale)
    lut = np.zeros((min(t, TOKEN_CHUNK), k // 2, LUT_WIDTH), np.int16)
    for t0 in range(0, t, TOKEN_CHUNK):
        nt = min(TOKEN_CHUNK, t - t0)
        _build_luts(q, t0, nt, lut)
        _lut_kernel(tiles, w.out_features, lut, t0, nt, scales, dws, ts, out)
