"""Float weights -> ternary GGUF bytes in one pass (numba), next to a plain numpy twin of each kernel.

The conversion of a float tensor needs two passes and no more: `row_stats` (absmean needs the mean |W|
of the whole tensor before any value can be ternarized), then one fused pass per row that ternarizes
(`T = clamp(rint(x * inv_scale[row]), -1, 1)`), writes the target type's bytes straight into the output
and sums the squared reconstruction error against the value the file will decode to. No float copy of
the ternarized tensor and no intermediate codes array are made.

The bytes are those of the two-step path (`ternarize`, then the byte-exact encoders in tq_kernels.py,
i2s_kernels.py and tl1_kernels.py applied to `T * scale`), which is what gguf.quants / bitnet.cpp give
for `T * scale`. That is why the kernels need, per row:

* TQ1_0 / TQ2_0: a block's d is max|T * s| = s when the block has a nonzero, else 0; stored as fp16
  (numba has no float16, so the caller passes the fp16 bits `d_bits[row]` and the fp16 value as float32
  `stored[row]`). `roundf((T * s) * (1 / s))` is T for every normal s, so codes are T + 1.
* I2_S / TL1: one per-tensor scale, max|T * s| (s, or 0 when every T is 0), and a value is coded 0
  when |T * s| < 1e-6 (compared in double, as bitnet.cpp does): `zero_below` is true when s < 1e-6,
  and then every value is coded 0. The caller writes the scale tail from the returned nonzero counts.

Each kernel returns (sse [M] float64, nnz [M] int64): per row the sum of squared differences between x
and the decoded value, and the number of nonzero ternary values. The squares are summed in float32 per
block (32 to 256 values) and the blocks in float64.
"""

from __future__ import annotations

import numba
import numpy as np

from .i2s_kernels import QK_I2_S
from .tl1_kernels import TL1_BK, TL1_BM
from .tq_kernels import QK_K, TQ1_0_BYTES, TQ2_0_BYTES

_FM = {"reassoc", "contract"}  # lets LLVM vectorize the error sums; the codes use no additions


@numba.njit(inline="always")
def _trit(v: np.float32, inv: np.float32) -> np.float32:
    t = np.rint(v * inv)
    if t > 1:
        t = np.float32(1.0)
    elif t < -1:
        t = np.float32(-1.0)
    return t


# ----------------------------------------------------------------------------------------- TQ2_0/TQ1_0


@numba.njit(cache=True, parallel=True, fastmath=_FM)
def tq2_0_numba(x, inv, stored, d_bits, out):  # noqa: ANN001, ANN201
    """TQ2_0 bytes of clamp(rint(x * inv[row])) into out [M, K/256, 66]; returns (sse, nnz) per row."""
    M, K = x.shape
    sse = np.zeros(M, np.float64)
    nnz = np.zeros(M, np.int64)
    for m in numba.prange(M):
        iv = inv[m]
        st = stored[m]
        e_row = 0.0
        n_row = 0
        for b in range(K // QK_K):
            base = b * QK_K
            e = np.float32(0.0)
            n = 0
            for h in range(2):
                for j in range(32):
                    byte = 0
                    for p in range(4):
                        v = x[m, base + 128 * h + 32 * p + j]
                        t = _trit(v, iv)
                        byte |= (np.int32(t) + 1) << (2 * p)
                        n += t != 0
                        d = v - t * st
                        e += d * d
                    out[m, b, 32 * h + j] = byte
            if n:
                out[m, b, 64] = d_bits[m] & 0xFF
                out[m, b, 65] = d_bits[m] >> 8
            else:
                out[m, b, 64] = 0
                out[m, b, 65] = 0
            e_row += e
            n_row += n
        sse[m] = e_row
        nnz[m] = n_row
    return sse, nnz


@numba.njit(inline="always")
def _base3_byte(v: np.int32) -> np.int32:
    """ceil(v * 256 / 243) = (v * 256 + 242) // 243 for v in 0..242, as a multiply and a shift (exact
    for every numerator up to 62194, checked in the tests) so that it vectorizes."""
    return ((v * 256 + 242) * 69043) >> 24


@numba.njit(inline="always")
def _digit(v: np.float32, iv: np.float32, st: np.float32) -> tuple[np.int32, np.float32, np.int32]:
    """(base-3 digit T + 1, squared error, 1 if T != 0) of one value."""
    t = _trit(v, iv)
    d = v - t * st
    return np.int32(t) + 1, d * d, np.int32(t != 0)


@numba.njit(cache=True, parallel=True, fastmath=_FM)
def tq1_0_numba(x, inv, stored, d_bits, out):  # noqa: ANN001, ANN201
    """TQ1_0 bytes of clamp(rint(x * inv[row])) into out [M, K/256, 54]; returns (sse, nnz) per row."""
    M, K = x.shape
    sse = np.zeros(M, np.float64)
    nnz = np.zeros(M, np.int64)
    for m in numba.prange(M):
        iv = inv[m]
        st = stored[m]
        e_row = 0.0
        n_row = 0
        for b in range(K // QK_K):
            base = b * QK_K
            e = np.float32(0.0)
            n = 0
            # Each loop has constant strides so LLVM vectorizes it over j; digit p weighs 3^(4-p).
            for j in range(32):  # qs[0..31]: elements 32p + j
                v = np.int32(0)
                for p in range(5):
                    c, e1, n1 = _digit(x[m, base + 32 * p + j], iv, st)
                    v = 3 * v + c
                    e += e1
                    n += n1
                out[m, b, j] = _base3_byte(v)
            for j in range(16):  # qs[32..47]: elements 160 + 16p + j
                v = np.int32(0)
                for p in range(5):
                    c, e1, n1 = _digit(x[m, base + 160 + 16 * p + j], iv, st)
                    v = 3 * v + c
                    e += e1
                    n += n1
                out[m, b, 32 + j] = _base3_byte(v)
            for j in range(4):  # qh[0..3]: elements 240 + 4p + j, then a 5th digit of 0
                v = np.int32(0)
                for p in range(4):
                    c, e1, n1 = _digit(x[m, base + 240 + 4 * p + j], iv, st)
                    v = 3 * v + c
                    e += e1
                    n += n1
                out[m, b, 48 + j] = _base3_byte(3 * v)
            if n:
                out[m, b, 52] = d_bits[m] & 0xFF
                out[m, b, 53] = d_bits[m] >> 8
            else:
                out[m, b, 52] = 0
                out[m, b, 53] = 0
            e_row += e
            n_row += n
        sse[m] = e_row
        nnz[m] = n_row
    return sse, nnz


def _tq_numpy(x, inv, stored, d_bits, out, encode):  # noqa: ANN001, ANN202
    t = np.clip(np.rint(x * inv[:, None]), -1, 1).astype(np.float32)
    M, K = x.shape
    blocks = t.reshape(M, K // QK_K, QK_K)
    has = (blocks != 0).any(axis=2)
    enc = encode(t.reshape(-1, QK_K)).reshape(M, K // QK_K, -1)  # codes for T (d = 1 per block)
    out[:, :, :-2] = enc[:, :, :-2]
    d = np.where(has, d_bits[:, None], 0).astype("<u2")
    out[:, :, -2:] = d.view(np.uint8).reshape(M, K // QK_K, 2)
    err = x.astype(np.float64) - (t * stored[:, None]).astype(np.float64)
    return (err * err).sum(axis=1), (t != 0).sum(axis=1).astype(np.int64)


def tq2_0_numpy(x, inv, stored, d_bits, out):  # noqa: ANN001, ANN201
    """numpy twin of tq2_0_numba."""
    from .tq_kernels import encode_tq2_0_numpy

    return _tq_numpy(x, inv, stored, d_bits, out, encode_tq2_0_numpy)


def tq1_0_numpy(x, inv, stored, d_bits, out):  # noqa: ANN001, ANN201
    """numpy twin of tq1_0_numba."""
    from .tq_kernels import encode_tq1_0_numpy

    return _tq_numpy(x, inv, stored, d_bits, out, encode_tq1_0_numpy)


# ------------------------------------------------------------------------------------------ I2_S, TL1


@numba.njit(cache=True, parallel=True, fastmath=_FM)
def i2s_numba(x, inv, stored, zero_below, out):  # noqa: ANN001, ANN201
    """I2_S code bytes of clamp(rint(x * inv)) into out [M, K/4] (x86 layout, 128-value blocks in row
    order); every value coded 0 when zero_below. Returns (sse, nnz) per row (stored: the decode scale;
    nnz counts T, before zero_below)."""
    M, K = x.shape
    sse = np.zeros(M, np.float64)
    nnz = np.zeros(M, np.int64)
    iv = inv[0]
    st = stored[0]
    keep = np.float32(0.0) if zero_below else np.float32(1.0)
    for m in numba.prange(M):
        e_row = 0.0
        n_row = 0
        for b in range(K // QK_I2_S):
            base = b * QK_I2_S
            e = np.float32(0.0)
            n = 0
            for j in range(32):
                byte = 0
                for p in range(4):
                    v = x[m, base + 32 * p + j]
                    t = _trit(v, iv)
                    n += t != 0
                    t *= keep
                    byte |= (np.int32(t) + 1) << (6 - 2 * p)
                    d = v - t * st
                    e += d * d
                out[m, 32 * b + j] = byte
            e_row += e
            n_row += n
        sse[m] = e_row
        nnz[m] = n_row
    return sse, nnz


def i2s_numpy(x, inv, stored, zero_below, out):  # noqa: ANN001, ANN201
    """numpy twin of i2s_numba."""
    t_all = np.clip(np.rint(x * inv[0]), -1, 1).astype(np.float32)
    t = t_all * np.float32(0.0 if zero_below else 1.0)
    c = (t + 1).astype(np.uint8).reshape(-1, 4, 32)
    out[...] = ((c[:, 0] << 6) | (c[:, 1] << 4) | (c[:, 2] << 2) | c[:, 3]).reshape(out.shape)
    err = x.astype(np.float64) - (t * stored[0]).astype(np.float64)
    return (err * err).sum(axis=1), (t_all != 0).sum(axis=1).astype(np.int64)


@numba.njit(inline="always")
def _pair(x, m, k, iv, st, keep):  # noqa: ANN001, ANN202
    """(TL1 pair index 3*t0 + t1 + 4 of x[m, k], x[m, k+1]; squared error float32; nonzero count)."""
    v0 = x[m, k]
    v1 = x[m, k + 1]
    t0 = _trit(v0, iv)
    t1 = _trit(v1, iv)
    n = (t0 != 0) + (t1 != 0)
    t0 *= keep
    t1 *= keep
    d0 = v0 - t0 * st
    d1 = v1 - t1 * st
    return np.int32(3 * t0 + t1) + 4, d0 * d0 + d1 * d1, n


@numba.njit(cache=True, parallel=True, fastmath=_FM)
def tl1_numba(x, inv, stored, zero_below, out):  # noqa: ANN001, ANN201
    """Tritium TL1 tiles of clamp(rint(x * inv)) into out [M/16, K/32, 16, 8]; every value coded 0 when
    zero_below. Returns (sse, nnz) per row (stored: the decode scale; nnz counts T, before zero_below)."""
    M, K = x.shape
    sse = np.zeros(M, np.float64)
    nnz = np.zeros(M, np.int64)
    iv = inv[0]
    st = stored[0]
    keep = np.float32(0.0) if zero_below else np.float32(1.0)
    for m in numba.prange(M):
        ti = m // TL1_BM
        r = m % TL1_BM
        e_row = 0.0
        n_row = 0
        for tj in range(K // TL1_BK):
            e = np.float32(0.0)
            n = 0
            for b in range(TL1_BK // 4):
                k = tj * TL1_BK + 4 * b
                hi, e0, n0 = _pair(x, m, k, iv, st, keep)
                lo, e1, n1 = _pair(x, m, k + 2, iv, st, keep)
                out[ti, tj, r, b] = (hi << 4) | lo
                e += e0 + e1
                n += n0 + n1
            e_row += e
            n_row += n
        sse[m] = e_row
        nnz[m] = n_row
    return sse, nnz


def tl1_numpy(x, inv, stored, zero_below, out):  # noqa: ANN001, ANN201
    """numpy twin of tl1_numba."""
    M, K = x.shape
    t_all = np.clip(np.rint(x * inv[0]), -1, 1).astype(np.float32)
    t = t_all * np.float32(0.0 if zero_below else 1.0)
    ti = t.astype(np.int16)
    idx = (3 * ti[:, 0::2] + ti[:, 1::2] + 4).astype(np.uint8)
    byte = (idx[:, 0::2] << 4) | idx[:, 1::2]
    out[...] = byte.reshape(M // TL1_BM, TL1_BM, K // TL1_BK, 8).transpose(0, 2, 1, 3)
    err = x.astype(np.float64) - (t * stored[0]).astype(np.float64)
    return (err * err).sum(axis=1), (t_all != 0).sum(axis=1).astype(np.int64)


KERNELS = {
    "numba": {"TQ2_0": tq2_0_numba, "TQ1_0": tq1_0_numba, "I2_S": i2s_numba, "TL1": tl1_numba},
    "numpy": {"TQ2_0": tq2_0_numpy, "TQ1_0": tq1_0_numpy, "I2_S": i2s_numpy, "TL1": tl1_numpy},
}
TAIL = 32  # I2_S / TL1: float32 scale + 28 zero bytes after the codes
ZERO_BELOW = 1e-6  # bitnet.cpp codes |w| < 1e-6 as 0 (compared in double)


def ternary_nbytes(type_name: str, M: int, K: int) -> int:
    """Payload bytes of a [M, K] tensor of TQ2_0, TQ1_0, I2_S or TL1."""
    if type_name in ("TQ2_0", "TQ1_0"):
        return M * K // QK_K * (TQ2_0_BYTES if type_name == "TQ2_0" else TQ1_0_BYTES)
    return M * K // 4 + TAIL


def encode_ternary(
    type_name: str, x: np.ndarray, inv: np.ndarray, scale: np.ndarray, *, impl: str = "numba",
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(GGUF payload uint8 1-D, sse [M] float64, nnz [M] int64) of T = clamp(rint(x * inv[row]), -1, 1)
    with dequant scale scale[row], for float32 x [M, K] (C-contiguous) in type TQ2_0, TQ1_0, I2_S or
    TL1. The bytes equal the type's encoder applied to T * scale (I2_S / TL1: scale[0] for every row).
    sse is against the values the payload decodes to; nnz counts the nonzero T. `out` (uint8, 1-D,
    ternary_nbytes long, e.g. a shared-memory view) receives the payload instead of a new array."""
    M, K = x.shape
    kernel = KERNELS[impl][type_name]
    n = ternary_nbytes(type_name, M, K)
    if out is None:
        out = np.empty(n, np.uint8)
    elif out.shape != (n,) or out.dtype != np.uint8:
        raise ValueError(f"{type_name} payload of [{M}, {K}] needs uint8 [{n}], got {out.dtype} "
                         f"{list(out.shape)}")
    if type_name in ("TQ2_0", "TQ1_0"):
        half = scale.astype(np.float16)
        blocks = out.reshape(M, K // QK_K, -1)
        sse, nnz = kernel(x, inv, half.astype(np.float32), half.view(np.uint16), blocks)
        return out, sse, nnz
    zero_below = bool(np.float64(scale[0]) < ZERO_BELOW)
    codes = out[: M * K // 4]
    if type_name == "I2_S":
        view = codes.reshape(M, K // 4)
    else:
        view = codes.reshape(M // TL1_BM, K // TL1_BK, TL1_BM, 8)
    # the decoded scale: max|T * s| = s, or 0 when every T is 0 (known only after the pass; the error of
    # an all-zero tensor does not depend on the scale, so s is passed either way)
    sse, nnz = kernel(x, inv, scale[:1].astype(np.float32), zero_below, view)
    tail = out[M * K // 4 :]
    tail[:] = 0
    tail[:4] = np.frombuffer(np.float32(scale[0] if nnz.any() else 0.0).tobytes(), np.uint8)
    return out, sse, nnz
