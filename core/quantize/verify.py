"""Check each tensor a quantizer returned against its source, in the core (the plugin's own numbers are not
trusted): decode the payload, measure the reconstruction error, and — when the source says its values
are ternary x a scale — whether the output kept them exactly.

"Kept exactly" for a row of the source: every value is 0 or +-one magnitude s (the source really is
ternary x a scale there), every decoded value has the source value's sign (or is 0 where it is 0), and
every nonzero decoded value is s as the output type stores a scale (fp16 for TQ1_0 / TQ2_0 / F16, the
float32 itself for I2_S / TL1). A source that claims ternary but fails this is reported as not kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .decode_kernels import (
    decode_ternary,
    i2s_row,
    payload_nbytes,
    payload_views,
    tl1_row,
    tq1_0_row,
    tq2_0_row,
)
from .errors import QuantizeError

TERNARY_TYPES = ("TQ2_0", "TQ1_0", "I2_S", "TL1")
FP16_SCALE_TYPES = ("TQ2_0", "TQ1_0", "F16")


@dataclass(frozen=True)
class TensorCheck:
    """What the output of one tensor is, measured against its source."""

    rmse: float  # sqrt(mean((decoded - source)^2))
    rel_error: float  # rmse / rms(source); 0 for an all-zero source
    kept_ternary: bool | None  # None when the source does not claim ternary values
    rows_not_kept: int  # rows of a ternary-claiming source whose values or scale were not kept


_ABS = np.uint32(0x7FFFFFFF)
_ONE = np.uint32(1)


@numba.njit(inline="always")
def _compare_row(x: np.ndarray, xb: np.ndarray, m: int, y: np.ndarray, stats: np.ndarray,
                 mags: np.ndarray) -> None:
    """stats[m] = (sum (y-x[m])^2, sum x[m]^2, sign mismatches); mags[m] = bit patterns of (max|x|, min
    nonzero |x| - 1, max|y|, min nonzero |y| - 1) (the -1 wraps an all-zero row to 0xFFFFFFFF).

    Magnitudes and signs are compared on the float32 bit patterns (xb: x viewed as uint32), where
    min/max/sign tests are integer operations that vectorize without fast-math."""
    yb = y.view(np.uint32)
    e = 0.0
    s = 0.0
    bad = 0
    xhi = np.uint32(0)
    xlo = np.uint32(0xFFFFFFFF)
    yhi = np.uint32(0)
    ylo = np.uint32(0xFFFFFFFF)
    for k in range(x.shape[1]):
        a = np.float64(x[m, k])
        d = np.float64(y[k]) - a
        e += d * d
        s += a * a
        ux = xb[m, k]
        uy = yb[k]
        ax = ux & _ABS
        ay = uy & _ABS
        # mismatch: one is zero and the other not, or both nonzero with different sign bits
        nzx = np.uint32(ax != 0)
        nzy = np.uint32(ay != 0)
        bad += (nzx ^ nzy) | (nzx & nzy & ((ux ^ uy) >> 31))
        xhi = max(xhi, ax)
        xlo = min(xlo, ax - _ONE)
        yhi = max(yhi, ay)
        ylo = min(ylo, ay - _ONE)
    stats[m, 0] = e
    stats[m, 1] = s
    stats[m, 2] = bad
    mags[m, 0] = xhi
    mags[m, 1] = xlo
    mags[m, 2] = yhi
    mags[m, 3] = ylo


# One kernel per type: decode a row into a small buffer and compare it at once, so the decoded tensor
# is never written out whole.
@numba.njit(cache=True, parallel=True, fastmath={"reassoc"})
def _check_tq2_0(codes, scales, x, xb, stats, mags):  # noqa: ANN001, ANN202
    for m in numba.prange(x.shape[0]):
        y = np.empty(x.shape[1], np.float32)
        tq2_0_row(codes, scales, m, y)
        _compare_row(x, xb, m, y, stats, mags)


@numba.njit(cache=True, parallel=True, fastmath={"reassoc"})
def _check_tq1_0(codes, scales, x, xb, stats, mags):  # noqa: ANN001, ANN202
    for m in numba.prange(x.shape[0]):
        y = np.empty(x.shape[1], np.float32)
        tq1_0_row(codes, scales, m, y)
        _compare_row(x, xb, m, y, stats, mags)


@numba.njit(cache=True, parallel=True, fastmath={"reassoc"})
def _check_i2s(codes, scales, x, xb, stats, mags):  # noqa: ANN001, ANN202
    for m in numba.prange(x.shape[0]):
        y = np.empty(x.shape[1], np.float32)
        i2s_row(codes, scales, m, y)
        _compare_row(x, xb, m, y, stats, mags)


@numba.njit(cache=True, parallel=True, fastmath={"reassoc"})
def _check_tl1(codes, scales, x, xb, stats, mags):  # noqa: ANN001, ANN202
    for m in numba.prange(x.shape[0]):
        y = np.empty(x.shape[1], np.float32)
        tl1_row(codes, scales, m, y)
        _compare_row(x, xb, m, y, stats, mags)


@numba.njit(cache=True, parallel=True, fastmath={"reassoc"})
def _check_decoded(y2, x, xb, stats, mags):  # noqa: ANN001, ANN202
    for m in numba.prange(x.shape[0]):
        _compare_row(x, xb, m, y2[m], stats, mags)


CHECKS = {"TQ2_0": _check_tq2_0, "TQ1_0": _check_tq1_0, "I2_S": _check_i2s, "TL1": _check_tl1}


def _check_size(type_name: str, raw: np.ndarray, shape: tuple[int, ...]) -> None:
    M, K = (1, shape[0]) if len(shape) == 1 else shape
    want = payload_nbytes(type_name, M, K)
    if raw.nbytes != want:
        raise QuantizeError(f"{type_name} payload of {raw.nbytes} bytes, expected {want} for {list(shape)}")


def decode_payload(type_name: str, raw: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """float32 values (numpy shape) of a payload; QuantizeError when its size is not the type's."""
    from tritium.core.formats.ggml_dequant import dequantize

    M, K = (1, shape[0]) if len(shape) == 1 else shape
    if type_name in TERNARY_TYPES:
        _check_size(type_name, raw, shape)
        return decode_ternary(type_name, raw, M, K).reshape(shape)
    try:
        return np.asarray(dequantize(raw, type_name, tuple(reversed(shape))), dtype=np.float32)
    except (ValueError, NotImplementedError) as exc:
        raise QuantizeError(f"cannot decode a {type_name} payload of {raw.nbytes} bytes for {list(shape)}: "
                            f"{exc}") from None


def check_tensor(type_name: str, raw: np.ndarray, x: np.ndarray, *, claims_ternary: bool) -> TensorCheck:
    """Decode `raw` (type `type_name`) and compare it with the float32 source `x`."""
    x2 = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, x.shape[-1])
    M, K = x2.shape
    stats = np.zeros((M, 3), np.float64)
    mags = np.zeros((M, 4), np.uint32)
    if type_name in CHECKS:
        _check_size(type_name, raw, x.shape)
        codes, scales = payload_views(type_name, raw, M, K)
        CHECKS[type_name](codes, scales, x2, x2.view(np.uint32), stats, mags)
    else:
        y2 = decode_payload(type_name, raw, x.shape).reshape(M, K)
        _check_decoded(np.ascontiguousarray(y2), x2, x2.view(np.uint32), stats, mags)
    n = max(x2.size, 1)
    rmse = float(np.sqrt(stats[:, 0].sum() / n))
    rms = float(np.sqrt(stats[:, 1].sum() / n))
    kept, not_kept = None, 0
    if claims_ternary:
        mags[:, [1, 3]] += _ONE  # min nonzero (0 for an all-zero row: then max is 0 too)
        xhi, xlo, yhi, ylo = np.ascontiguousarray(mags.T).view(np.float32)
        s = xhi.astype(np.float16).astype(np.float32) if type_name in FP16_SCALE_TYPES else xhi
        row_ok = (stats[:, 2] == 0) & ((xhi == 0) | ((xlo == xhi) & (yhi == s) & (ylo == s)))
        not_kept = int((~row_ok).sum())
        kept = not_kept == 0
    return TensorCheck(rmse, rmse / rms if rms > 0 else 0.0, kept, not_kept)
