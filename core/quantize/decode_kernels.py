"""numba decoders of the ternary GGUF payloads a quantizer returns (TQ2_0, TQ1_0, I2_S, Tritium TL1) into
float32 [M, K], parallel over rows, so the core can check every tensor it writes without trusting the
plugin and without making `tritium quantize` many times slower. Their plain numpy twins are the
reference decoders of core/formats (ggml_dequant.dequantize, tl1_layout.tl1_trits); the tests compare.

Layouts (FORMATS.md): TQ2_0 blocks of 256 values in 66 bytes (qs[64]: byte 32h + j, bits 2l..2l+1 hold
element 128h + 32l + j as q + 1; fp16 d); TQ1_0 blocks in 54 bytes (base-3 digits, digit n of byte b is
((uint8)(b * 3^n) * 3) >> 8; qs[0..31] -> 32n + j, qs[32..47] -> 160 + 16n + j, qh[0..3] -> 240 + 4n + j;
fp16 d); I2_S 128-value blocks of 32 bytes in row-major order (byte j: values j, 32+j, 64+j, 96+j in
bits 7-6 .. 1-0), then a float32 scale; TL1 tiles [M/16][K/32][16 rows][8 bytes] of pair nibbles
3*t0 + t1 + 4, then a float32 scale. The fp16 block scales are converted by numpy before the kernels.
"""

from __future__ import annotations

import numba
import numpy as np

QK_K = 256
BLOCK_BYTES = {"TQ2_0": 66, "TQ1_0": 54}
TAIL = 32  # I2_S / TL1: float32 scale + padding


# Row decoders: values of row m into y (float32 [K]); the whole-tensor kernels below and the core's
# check (verify.py) both run them, one row at a time.


@numba.njit(inline="always")
def tq2_0_row(qs: np.ndarray, d: np.ndarray, m: int, y: np.ndarray) -> None:
    for b in range(qs.shape[1]):
        db = d[m, b]
        for h in range(2):
            for p in range(4):
                for j in range(32):
                    code = (qs[m, b, 32 * h + j] >> (2 * p)) & 3
                    y[b * QK_K + 128 * h + 32 * p + j] = np.float32(np.int32(code) - 1) * db


@numba.njit(inline="always")
def _trit_of(byte: np.uint8, pow3: np.int32) -> np.float32:
    return np.float32((((np.int32(byte) * pow3) & 0xFF) * 3 >> 8) - 1)


@numba.njit(inline="always")
def tq1_0_row(qs: np.ndarray, d: np.ndarray, m: int, y: np.ndarray) -> None:
    for b in range(qs.shape[1]):
        db = d[m, b]
        base = b * QK_K
        pow3 = 1
        for n in range(5):
            for j in range(32):
                y[base + 32 * n + j] = _trit_of(qs[m, b, j], pow3) * db
            for j in range(16):
                y[base + 160 + 16 * n + j] = _trit_of(qs[m, b, 32 + j], pow3) * db
            if n < 4:
                for j in range(4):
                    y[base + 240 + 4 * n + j] = _trit_of(qs[m, b, 48 + j], pow3) * db
            pow3 *= 3


@numba.njit(inline="always")
def i2s_row(codes: np.ndarray, scale: np.ndarray, m: int, y: np.ndarray) -> None:
    s = scale[0]
    for b in range(codes.shape[1] // 32):
        for p in range(4):
            for j in range(32):
                c = (codes[m, 32 * b + j] >> (6 - 2 * p)) & 3
                y[128 * b + 32 * p + j] = np.float32(np.int32(c) - 1) * s


@numba.njit(inline="always")
def tl1_row(tiles: np.ndarray, scale: np.ndarray, m: int, y: np.ndarray) -> None:
    s = scale[0]
    ti = m // 16
    r = m % 16
    for tj in range(tiles.shape[1]):
        for b in range(8):
            byte = np.int32(tiles[ti, tj, r, b])
            k = 32 * tj + 4 * b
            hi = byte >> 4
            lo = byte & 15
            y[k] = np.float32(hi // 3 - 1) * s
            y[k + 1] = np.float32(hi % 3 - 1) * s
            y[k + 2] = np.float32(lo // 3 - 1) * s
            y[k + 3] = np.float32(lo % 3 - 1) * s


@numba.njit(cache=True, parallel=True)
def _tq2_0(qs: np.ndarray, d: np.ndarray, out: np.ndarray) -> None:
    for m in numba.prange(out.shape[0]):
        tq2_0_row(qs, d, m, out[m])


@numba.njit(cache=True, parallel=True)
def _tq1_0(qs: np.ndarray, d: np.ndarray, out: np.ndarray) -> None:
    for m in numba.prange(out.shape[0]):
        tq1_0_row(qs, d, m, out[m])


@numba.njit(cache=True, parallel=True)
def _i2s(codes: np.ndarray, scale: np.ndarray, out: np.ndarray) -> None:
    for m in numba.prange(out.shape[0]):
        i2s_row(codes, scale, m, out[m])


@numba.njit(cache=True, parallel=True)
def _tl1(tiles: np.ndarray, scale: np.ndarray, out: np.ndarray) -> None:
    for m in numba.prange(out.shape[0]):
        tl1_row(tiles, scale, m, out[m])


def payload_views(type_name: str, raw: np.ndarray, M: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    """(the payload's code bytes shaped for the row decoders, the scales: fp16 block d as float32 [M, K/256]
    for TQ types, the float32 tensor scale as a 1-element array for I2_S / TL1)."""
    if type_name in BLOCK_BYTES:
        nb = K // QK_K
        blocks = raw.reshape(M, nb, BLOCK_BYTES[type_name])
        d = np.ascontiguousarray(blocks[:, :, -2:]).view("<f2").reshape(M, nb).astype(np.float32)
        return blocks, d
    n = M * K // 4
    scale = raw[n:n + 4].copy().view("<f4")
    if type_name == "I2_S":
        return raw[:n].reshape(M, K // 4), scale
    if type_name == "TL1":
        return raw[:n].reshape(M // 16, K // 32, 16, 8), scale
    raise ValueError(f"{type_name} is not a ternary type")


KERNELS = {"TQ2_0": _tq2_0, "TQ1_0": _tq1_0, "I2_S": _i2s, "TL1": _tl1}


def payload_nbytes(type_name: str, M: int, K: int) -> int:
    """Bytes of a [M, K] tensor of `type_name` (one of the four ternary types)."""
    if type_name in BLOCK_BYTES:
        return M * K // QK_K * BLOCK_BYTES[type_name]
    return M * K // 4 + TAIL


def decode_ternary(type_name: str, raw: np.ndarray, M: int, K: int) -> np.ndarray:
    """float32 [M, K] values of the payload `raw` (uint8, 1-D, exactly payload_nbytes) of a ternary type.

    TL1 nibbles above 8 (not a pair code) decode to garbage values here; the reference decoder refuses
    them, and a check against the source will show them as errors."""
    codes, scales = payload_views(type_name, raw, M, K)
    out = np.empty((M, K), np.float32)
    KERNELS[type_name](codes, scales, out)
    return out


def decode_ternary_numpy(type_name: str, raw: np.ndarray, M: int, K: int) -> np.ndarray:
    """numpy twin of decode_ternary: the reference decoders of core/formats."""
    from tritium.core.formats.ggml_dequant import dequantize
    from tritium.core.formats.tl1_layout import tl1_trits

    if type_name == "TL1":
        return tl1_trits(raw, M, K).astype(np.float32) * raw[M * K // 4:M * K // 4 + 4].copy().view("<f4")[0]
    return np.asarray(dequantize(raw, type_name, (K, M)), dtype=np.float32)
