"""llama.cpp TQ2_0 and TQ1_0 encoders (numba), byte-exact with `gguf.quants` / ggml's
`quantize_row_tq*_0_ref` for any finite float32 input, each next to a plain numpy twin.

Both types cut each row into blocks of 256 values (QK_K). Per block: d = max|x| (stored as fp16, last),
q = roundf(x * (1/d)) in {-1, 0, 1} (roundf: half away from zero, float32 arithmetic), stored as q + 1.

TQ2_0 (66 bytes): `qs[64]`, byte 32h + m holds element 128h + 32l + m in bits 2l..2l+1; then fp16 d.
TQ1_0 (54 bytes): base-3, 5 digits per byte in qs[48] (qs[0..31]: elements 32n + m; qs[32..47]:
160 + 16n + m), 4 per byte in qh[4] (240 + 4n + m), digit n weighted 3^(4-n), byte = ceil(v*256/243)
= (v*256 + 242) // 243; then fp16 d.

fp16 rounding of d is left to numpy (numba has no float16): the kernels return d as float32.
"""

from __future__ import annotations

import numba
import numpy as np

QK_K = 256
TQ2_0_BYTES = 66
TQ1_0_BYTES = 54


@numba.njit(inline="always")
def _roundf(v: np.float32) -> np.int64:
    # gguf's np_roundf: sign(v) * (floor|v| + floor(2 * (|v| - floor|v|)))
    a = abs(v)
    f = np.floor(a)
    b = f + np.floor(np.float32(2.0) * (a - f))
    return np.int64(b) if v >= 0 else -np.int64(b)


@numba.njit(cache=True, parallel=True)
def _tq_codes(x: np.ndarray, codes: np.ndarray, d: np.ndarray) -> None:
    """codes[m, k] = q + 1 (uint8), d[m, b] = block absmax (float32)."""
    M, K = x.shape
    nb = K // QK_K
    for m in numba.prange(M):
        for b in range(nb):
            base = b * QK_K
            amax = np.float32(0.0)
            for i in range(QK_K):
                a = abs(x[m, base + i])
                if a > amax:
                    amax = a
            d[m, b] = amax
            inv = np.float32(1.0) / amax if amax != 0 else np.float32(0.0)
            for i in range(QK_K):
                codes[m, base + i] = np.uint8(_roundf(x[m, base + i] * inv) + 1)


@numba.njit(cache=True, parallel=True)
def _tq2_pack(codes: np.ndarray, out: np.ndarray) -> None:
    """out[m, b, 0:64] = TQ2_0 qs bytes of codes [M, K]."""
    M, K = codes.shape
    nb = K // QK_K
    for m in numba.prange(M):
        for b in range(nb):
            base = b * QK_K
            for h in range(2):
                for j in range(32):
                    e = base + 128 * h + j
                    out[m, b, 32 * h + j] = (
                        codes[m, e]
                        | (codes[m, e + 32] << 2)
                        | (codes[m, e + 64] << 4)
                        | (codes[m, e + 96] << 6)
                    )


@numba.njit(inline="always")
def _base3_byte(v: np.int64) -> np.uint8:
    return np.uint8((v * 256 + 242) // 243)


@numba.njit(cache=True, parallel=True)
def _tq1_pack(codes: np.ndarray, out: np.ndarray) -> None:
    """out[m, b, 0:52] = TQ1_0 qs + qh bytes of codes [M, K]."""
    M, K = codes.shape
    nb = K // QK_K
    for m in numba.prange(M):
        for b in range(nb):
            c = codes[m, b * QK_K : (b + 1) * QK_K]
            for j in range(32):
                v = (
                    np.int64(c[j]) * 81
                    + np.int64(c[32 + j]) * 27
                    + np.int64(c[64 + j]) * 9
                    + np.int64(c[96 + j]) * 3
                    + np.int64(c[128 + j])
                )
                out[m, b, j] = _base3_byte(v)
            for j in range(16):
                v = (
                    np.int64(c[160 + j]) * 81
                    + np.int64(c[176 + j]) * 27
                    + np.int64(c[192 + j]) * 9
                    + np.int64(c[208 + j]) * 3
                    + np.int64(c[224 + j])
                )
                out[m, b, 32 + j] = _base3_byte(v)
            for j in range(4):
                v = (
                    np.int64(c[240 + j]) * 81
                    + np.int64(c[244 + j]) * 27
                    + np.int64(c[248 + j]) * 9
                    + np.int64(c[252 + j]) * 3
                )
                out[m, b, 48 + j] = _base3_byte(v)


def _check(x: np.ndarray) -> tuple[int, int]:
    if x.ndim != 2 or x.dtype != np.float32:
        raise ValueError(f"expected float32 [rows, K], got {x.dtype} {list(x.shape)}")
    M, K = x.shape
    if K % QK_K:
        raise ValueError(f"TQ1_0/TQ2_0 need the row length to be a multiple of {QK_K}, got {K}")
    return M, K


def _put_d(out: np.ndarray, d: np.ndarray) -> None:
    out[:, :, -2:] = d.astype(np.float16).view(np.uint8).reshape(d.shape + (2,))


def encode_tq2_0_numba(x: np.ndarray) -> np.ndarray:
    """TQ2_0 bytes (uint8, 1-D, M*K/256*66) of float32 x [M, K]."""
    M, K = _check(x)
    nb = K // QK_K
    codes = np.empty((M, K), np.uint8)
    d = np.empty((M, nb), np.float32)
    _tq_codes(np.ascontiguousarray(x), codes, d)
    out = np.empty((M, nb, TQ2_0_BYTES), np.uint8)
    _tq2_pack(codes, out)
    _put_d(out, d)
    return out.reshape(-1)


def encode_tq1_0_numba(x: np.ndarray) -> np.ndarray:
    """TQ1_0 bytes (uint8, 1-D, M*K/256*54) of float32 x [M, K]."""
    M, K = _check(x)
    nb = K // QK_K
    codes = np.empty((M, K), np.uint8)
    d = np.empty((M, nb), np.float32)
    _tq_codes(np.ascontiguousarray(x), codes, d)
    out = np.empty((M, nb, TQ1_0_BYTES), np.uint8)
    _tq1_pack(codes, out)
    _put_d(out, d)
    return out.reshape(-1)


def _codes_numpy(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    blocks = x.reshape(-1, QK_K)
    d = np.abs(blocks).max(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    v = blocks * inv
    a = np.abs(v)
    f = np.floor(a)
    q = np.sign(v) * (f + np.floor(np.float32(2) * (a - f)))
    return (q.astype(np.int8) + 1).astype(np.uint8), d.reshape(-1)


def encode_tq2_0_numpy(x: np.ndarray) -> np.ndarray:
    """numpy twin of encode_tq2_0_numba."""
    M, K = _check(x)
    codes, d = _codes_numpy(x)
    c = codes.reshape(-1, 2, 4, 32)
    qs = c[:, :, 0] | (c[:, :, 1] << 2) | (c[:, :, 2] << 4) | (c[:, :, 3] << 6)
    out = np.concatenate([qs.reshape(-1, 64), d.astype(np.float16).view(np.uint8).reshape(-1, 2)], axis=1)
    return out.reshape(-1)


def encode_tq1_0_numpy(x: np.ndarray) -> np.ndarray:
    """numpy twin of encode_tq1_0_numba."""
    M, K = _check(x)
    codes, d = _codes_numpy(x)
    c = codes.astype(np.int64)
    w5 = np.array([81, 27, 9, 3, 1], np.int64)
    qs0 = (c[:, :160].reshape(-1, 5, 32) * w5[None, :, None]).sum(axis=1)
    qs1 = (c[:, 160:240].reshape(-1, 5, 16) * w5[None, :, None]).sum(axis=1)
    qh = (c[:, 240:].reshape(-1, 4, 4) * w5[None, :4, None]).sum(axis=1)
    v = np.concatenate([qs0, qs1, qh], axis=1)
    qb = ((v * 256 + 242) // 243).astype(np.uint8)
    out = np.concatenate([qb, d.astype(np.float16).view(np.uint8).reshape(-1, 2)], axis=1)
    return out.reshape(-1)
