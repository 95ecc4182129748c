"""y[T, out] = W · x for a ternary `TernaryWeight` and int8 activations, plus the dense F16/F32 matmul.

The integer part is exact. With codes c ∈ {0, 1, 2} (= w + 1) and int8 activations q, sums are
``Σ c·q − Σ q`` (the Σ q terms are computed once per token, like llama.cpp's bsums and bitnet.cpp's
act_sums). The float part is the activation scheme's origin, operation for operation:

* q8_k (llama.cpp ``ggml_vec_dot_tq2_0_q8_K``, AVX2 build, as disassembled from llama-cpp-python
  0.3.36): per 256-value block, 8 int32 lanes (lane l = bytes 4l..4l+3 of the block's two 32-byte
  groups, all planes, minus Σq of values 32l..32l+31); each lane is converted to float32 and
  fused-multiply-added with d = float32(d_w · d_a) into 8 float32 lanes; at the end of the row
  ``hsum_float_8``: ((f4+f0) + (f6+f2)) + ((f5+f1) + (f7+f3)). So Tritium's q8_k matmul output is
  llama.cpp's bit for bit (tests/compute/test_llamacpp_peer.py).
* i8_s / absmax_token (bitnet.cpp I2_S, transformers): one act scale ``a`` per token and exact sums per
  sub-block; ``y = Σ_b float32(float32(isum_b) / a) · d_w[b]``; with one weight scale per row (I2_S)
  this is bitnet.cpp's ``float32(float32(isum)/a) · w_scale`` exactly. transformers computes the float
  ``linear(q/a, T) · weight_scale`` instead; the two differ only by float32 summation rounding.
  Sub-blocks are ``gcd(act_block, scale_block)`` values long so both scales are constant inside one.
* then ``y *= tensor_scale`` (llama.cpp's optional ``<w>.scale``, applied after the matmul).

Kernel layout. A weight row is groups of 128 values in 32 bytes; byte j of a group holds four
2-bit codes, one per "plane" of 32 values. The kernels always read the bit pair at shift 2l as
plane l; `pack_activations` permutes each 128-value group of the activations to match the weight's
`plane_shifts` (I2_S keeps the first plane in the high bits, TQ2_0 in the low bits), so one kernel
serves both orders with compile-time shifts. Rows go four at a time (every activation load is
shared), and with several tokens each row quad's codes stay in L1 while the tokens stream past, so a
prefill gives bit for bit the results of token-by-token decoding.

Two kernel families with identical results: the AVX2 kernels (`simd_x86`: `vpmaddubsw` through LLVM
intrinsics, software prefetch, about 2x the portable speed) where the CPU has AVX2 — for q8_k with
`vpdpbusd` and four tokens per pass where it also has VNNI —, and portable numba kernels whose int16
multiply-adds LLVM vectorizes (vpmullw/vpaddw; partial sums stay in int16 lanes for at most 16 groups,
|Σ| ≤ 16·4·2·127 < 2^15, before they are widened).

Tritium TL1 weights (`TL1Weight`, no 2-bit codes) go to the lookup-table kernels of tl1_lut.py, which
read the file's tiles in place; their identity plane shifts keep the packed activations in K order.

Codes may be any uint8 array whose innermost axis is contiguous: [out, in/4] (I2_S, compact TQ2_0),
or [out, n_chunks, chunk_bytes] with chunk_bytes a multiple of 32 (e.g. a strided view of TQ2_0
blocks [out, K/256, 64] straight into the file, skipping the 2-byte d of each block).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import njit, prange
from tritium.core.compute import simd_x86
from tritium.core.compute.act_quant import QuantizedActivations
from tritium.core.compute.dense_simd import CHUNK as DENSE_CHUNK
from tritium.core.compute.dense_simd import f16_tile_1x1, f16_tile_4x1, f16_tile_4x4
from tritium.core.compute.float16 import F16C, f16_bits_to_f32
from tritium.core.compute.fma import fma32, fma32_numpy
from tritium.core.compute.simd_x86 import (
    ROW_TOKENS,
    isum4,
    q8k_row2,
    q8k_row6,
    q8k_rows4,
)
from tritium.core.compute.tl1_lut import tl1_matmul_numba, tl1_matmul_numpy
from tritium.core.model.weights import GROUP, GROUP_BYTES, TernaryWeight, TL1Weight

ROW_TILE = 64  # rows per tile of the multi-token q8_k kernel: 16-45 KiB of codes, kept in L2
PREFETCH_ROWS = 16  # AVX2 kernels prefetch the rows this far ahead (4 row quads; measured best of 8/16/32)
FLUSH_GROUPS = 16  # int16 lane sums are widened at least every 16 groups (no overflow, see above)


@dataclass
class PackedActivations:
    """Quantized activations in the order the ternary kernels read them.

    ``x16`` int16 [T, K]: each 128-value group permuted so chunk l holds the plane stored at bit
    shift 2l by weights with `plane_shifts`. ``gsum`` int32 [T, K/128]: Σ q per group. ``scales``,
    ``block``, ``divide`` as in `QuantizedActivations`. ``x8`` holds ``x16`` as int8.
    """

    x16: np.ndarray
    gsum: np.ndarray
    scales: np.ndarray
    block: int
    divide: bool
    plane_shifts: tuple[int, int, int, int]
    x8: np.ndarray  # the same permuted values as int8 (the AVX2 kernel's operand)

    @property
    def n_tokens(self) -> int:
        return int(self.x16.shape[0])


@functools.lru_cache(maxsize=16)
def _source_chunks(plane_shifts: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """For each kernel chunk l (bit shift 2l), the activation chunk (plane) stored there."""
    if sorted(plane_shifts) != [0, 2, 4, 6]:
        raise ValueError(f"plane_shifts must be a permutation of (0, 2, 4, 6), got {plane_shifts}")
    src = [0, 0, 0, 0]
    for plane, shift in enumerate(plane_shifts):
        src[shift // 2] = plane
    return src[0], src[1], src[2], src[3]


def empty_packed(t: int, k: int, like: QuantizedActivations,
                 plane_shifts: tuple[int, int, int, int]) -> PackedActivations:
    """Buffers for `t` packed tokens of width `k` (allocated once, refilled by `pack_activations`)."""
    if k % GROUP:
        raise ValueError(f"ternary matmul needs K % {GROUP} == 0, got K = {k}")
    return PackedActivations(np.zeros((t, k), np.int16), np.zeros((t, k // GROUP), np.int32),
                             like.scales, like.block, like.divide, plane_shifts, np.zeros((t, k), np.int8))


@njit(cache=True)
def _pack_kernel(q: np.ndarray, s0: int, s1: int, s2: int, s3: int, x16: np.ndarray, x8: np.ndarray,
                 gsum: np.ndarray) -> None:
    t, k = q.shape
    for i in range(t):
        for g in range(k // 128):
            base = g * 128
            total = 0
            for j in range(32):
                x8[i, base + j] = q[i, base + 32 * s0 + j]
                x8[i, base + 32 + j] = q[i, base + 32 * s1 + j]
                x8[i, base + 64 + j] = q[i, base + 32 * s2 + j]
                x8[i, base + 96 + j] = q[i, base + 32 * s3 + j]
            for j in range(128):
                x16[i, base + j] = x8[i, base + j]
                total += q[i, base + j]
            gsum[i, g] = total


def pack_activations(qa: QuantizedActivations, plane_shifts: tuple[int, int, int, int],
                     out: PackedActivations | None = None, *,
                     n_tokens: int | None = None) -> PackedActivations:
    """Permute and widen the first `n_tokens` rows of `qa` for weights with `plane_shifts` (into the
    buffers of `out` when given); the result views exactly those rows."""
    t = qa.q.shape[0] if n_tokens is None else n_tokens
    k = qa.q.shape[1]
    if out is None:
        out = empty_packed(t, k, qa, plane_shifts)
    s = _source_chunks(tuple(plane_shifts))
    _pack_kernel(qa.q[:t], s[0], s[1], s[2], s[3], out.x16[:t], out.x8[:t], out.gsum[:t])
    return PackedActivations(out.x16[:t], out.gsum[:t], qa.scales[:t], qa.block, qa.divide, plane_shifts,
                             out.x8[:t])


def _codes_view(w: TernaryWeight) -> tuple[np.ndarray, int, int, int]:
    """(flat uint8 buffer, row stride, chunk stride, groups per chunk) describing ``w.codes``."""
    c = w.codes
    if c.dtype != np.uint8 or c.strides[-1] != 1:
        raise ValueError(f"{w.name}: codes must be uint8 with a contiguous last axis, got {c.dtype} "
                         f"strides {c.strides}")
    if c.ndim == 2:
        if c.shape != (w.out_features, w.in_features // 4):
            raise ValueError(f"{w.name}: codes shape {c.shape}, expected "
                             f"{(w.out_features, w.in_features // 4)}")
        rs, cs, cb = c.strides[0], c.shape[1], c.shape[1]
        span = (c.shape[0] - 1) * rs + cb
    elif c.ndim == 3:
        if c.shape[0] != w.out_features or c.shape[1] * c.shape[2] * 4 != w.in_features or c.shape[2] % 32:
            raise ValueError(f"{w.name}: codes shape {c.shape} does not hold {w.out_features}x"
                             f"{w.in_features} values in 32-byte groups")
        rs, cs, cb = c.strides[0], c.strides[1], c.shape[2]
        span = (c.shape[0] - 1) * rs + (c.shape[1] - 1) * cs + cb
    else:
        raise ValueError(f"{w.name}: codes must be 2-D or 3-D, got shape {c.shape}")
    if rs < 0 or cs < 0:
        raise ValueError(f"{w.name}: negative code strides {c.strides}")
    flat = np.lib.stride_tricks.as_strided(c, shape=(span,), strides=(1,))
    return flat, int(rs), int(cs), cb // GROUP_BYTES


def _sub_block(w: TernaryWeight, xa: PackedActivations) -> int:
    sub = math.gcd(xa.block, w.scale_block)
    if sub % GROUP or w.in_features % sub:
        raise ValueError(f"{w.name}: activation block {xa.block} and weight scale block {w.scale_block} "
                         f"give sub-blocks of {sub} values; they must be a multiple of {GROUP}")
    return sub


def _check(w: TernaryWeight, xa: PackedActivations, out: np.ndarray) -> None:
    if xa.x16.shape[1] != w.in_features:
        raise ValueError(f"{w.name}: activations have K = {xa.x16.shape[1]}, weight expects {w.in_features}")
    if tuple(xa.plane_shifts) != tuple(w.plane_shifts):
        raise ValueError(f"{w.name}: activations packed for plane shifts {xa.plane_shifts}, weight has "
                         f"{w.plane_shifts}")
    if out.shape != (xa.n_tokens, w.out_features) or out.dtype != np.float32:
        raise ValueError(f"{w.name}: out must be float32 {(xa.n_tokens, w.out_features)}, got "
                         f"{out.dtype} {out.shape}")


# ------------------------------------------------------------------------------------------------
# numpy twin
# ------------------------------------------------------------------------------------------------
def ternary_matmul_numpy(w: TernaryWeight, xa: PackedActivations, out: np.ndarray) -> None:
    """out[T, out_features] = W · x, plainly: unpack the codes, one exact integer sum per sub-block,
    then the float scheme of the module docstring."""
    _check(w, xa, out)
    if isinstance(w, TL1Weight):
        _tl1_matmul(w, xa, out, tl1_matmul_numpy)
        return
    sub = _sub_block(w, xa)
    m, k = w.out_features, w.in_features
    groups = np.ascontiguousarray(w.codes).reshape(m, k // GROUP, GROUP_BYTES).astype(np.int64)
    codes = np.stack([(groups >> (2 * lane)) & 3 for lane in range(4)], axis=2).reshape(m, k)
    t = xa.n_tokens
    x = xa.x16[:t].astype(np.int64)
    if not xa.divide:
        _check_q8k(w, xa, sub)
        out[...] = _q8k_numpy(codes, x, w, xa.scales[:t]) * np.float32(w.tensor_scale)
        return
    y = np.zeros((t, m), np.float32)
    for b in range(k // sub):
        sl = slice(b * sub, (b + 1) * sub)
        isum = (x[:, sl] @ codes[:, sl].T - x[:, sl].sum(axis=1, keepdims=True)).astype(np.float32)
        dw = w.block_scales[:, b * sub // w.scale_block].astype(np.float32)[None, :]
        da = xa.scales[:t, b * sub // xa.block].astype(np.float32)[:, None]
        if xa.divide:
            y = (y + (isum / da).astype(np.float32) * dw).astype(np.float32)
        else:
            y = (y + isum * (dw * da).astype(np.float32)).astype(np.float32)
    out[...] = y * np.float32(w.tensor_scale)


def _q8k_numpy(codes: np.ndarray, x: np.ndarray, w: TernaryWeight, da: np.ndarray) -> np.ndarray:
    """llama.cpp's TQ2_0 x Q8_K float path (see `_q8k_kernel`) in numpy."""
    m, k = codes.shape
    t = x.shape[0]
    # [.., block, half, plane, lane, 4 bytes]: lane l = bytes 4l..4l+3 of each 32-byte group
    c = codes.reshape(m, k // 256, 2, 4, 8, 4)
    xx = x.reshape(t, k // 256, 2, 4, 8, 4)
    lsum = x.reshape(t, k // 256, 8, 32).sum(axis=3)  # Σq per 32-value stretch (paired bsums)
    f = np.zeros((t, m, 8), np.float32)
    for b in range(k // 256):
        lanes = np.einsum("thpLj,mhpLj->tmL", xx[:, b], c[:, b]) - lsum[:, b][:, None, :]
        d = (w.block_scales[:, b * 256 // w.scale_block].astype(np.float32)[None, :]
             * da[:, b].astype(np.float32)[:, None]).astype(np.float32)
        f = fma32_numpy(lanes.astype(np.float32), d[:, :, None], f)
    r = [(f[..., 4 + i] + f[..., i]).astype(np.float32) for i in range(4)]
    return ((r[0] + r[2]).astype(np.float32) + (r[1] + r[3]).astype(np.float32)).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# numba kernels
# ------------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _store_quad(out, t, ra, rb, rc, rd, y, first, ts):  # noqa: ANN001, ANN202
    """out[t, ra], out[t, rb], out[t, rc], out[t, rd] = y[first:first + 4] · ts: one token's results
    for a row quad."""
    out[t, ra] = y[first] * ts
    out[t, rb] = y[first + 1] * ts
    out[t, rc] = y[first + 2] * ts
    out[t, rd] = y[first + 3] * ts


@njit(cache=True, inline="always")
def _planes_dot(c, xa, xb, xc, xd):  # noqa: ANN001, ANN202
    """Σ code·x over the four 2-bit codes of byte c (plane l at bit shift 2l)."""
    return (c & 3) * xa + ((c >> 2) & 3) * xb + ((c >> 4) & 3) * xc + (c >> 6) * xd


@njit(cache=True, inline="always")
def _lane_sum(lanes):  # noqa: ANN001, ANN202
    """Sum of 32 int16 partial sums (widened), then the lanes are reset to zero."""
    s = 0
    for j in range(32):
        s += np.int32(lanes[j])
    for j in range(32):
        lanes[j] = 0
    return s


@njit(cache=True, inline="always")
def _combine(isum, xsum, da, dw, divide):  # noqa: ANN001, ANN202
    """One sub-block's contribution to y: the integer sum scaled as the activation scheme's origin does."""
    v = np.float32(isum - xsum)
    if divide:
        return np.float32(v / da) * dw
    return v * np.float32(dw * da)


@njit(parallel=True, cache=True)
def _exact_kernel(flat, rs, goffs, m, x16, gsum, act_scales, act_block, divide,  # noqa: ANN001
                         block_scales, scale_block, tensor_scale, sub, n_items, out):  # noqa: ANN001
    """One token (decode), per-token act scales: out[t, r] for every row r, one exact integer sum per
    sub-block. Rows go in quads that share every activation load; `n_items` runs of quads are spread
    over threads."""
    n_tok, k = x16.shape
    gps = sub // 128
    n_sub = k // sub
    n_quads = (m + 3) // 4
    per_item = (n_quads + n_items - 1) // n_items
    ts = np.float32(tensor_scale)
    xsum = np.zeros((n_tok, n_sub), np.int64)  # Σ q per token and sub-block, shared by all rows
    for t in range(n_tok):
        for b in range(n_sub):
            for gg in range(gps):
                xsum[t, b] += gsum[t, b * gps + gg]
    for item in prange(n_items):
        acc = np.zeros((4, 32), np.int16)
        acc0, acc1, acc2, acc3 = acc[0], acc[1], acc[2], acc[3]
        for quad in range(item * per_item, min(n_quads, (item + 1) * per_item)):
            r0 = quad * 4
            # a partial last quad repeats its last row (computed and stored twice, same value)
            ra, rb, rc, rd = r0, min(r0 + 1, m - 1), min(r0 + 2, m - 1), min(r0 + 3, m - 1)
            ba, bb, bc, bd = ra * rs, rb * rs, rc * rs, rd * rs
            for t in range(n_tok):
                x = x16[t]
                y0 = y1 = y2 = y3 = np.float32(0.0)
                for b in range(n_sub):
                    i0 = i1 = i2 = i3 = 0
                    g0 = b * gps
                    for f0 in range(g0, g0 + gps, FLUSH_GROUPS):
                        for g in range(f0, min(f0 + FLUSH_GROUPS, g0 + gps)):
                            xg = x[g * 128:g * 128 + 128]
                            go = goffs[g]
                            c0s = flat[ba + go:ba + go + 32]
                            c1s = flat[bb + go:bb + go + 32]
                            c2s = flat[bc + go:bc + go + 32]
                            c3s = flat[bd + go:bd + go + 32]
                            for j in range(32):
                                xa = xg[j]
                                xb = xg[32 + j]
                                xc = xg[64 + j]
                                xd = xg[96 + j]
                                c = c0s[j]
                                acc0[j] += _planes_dot(c, xa, xb, xc, xd)
                                c = c1s[j]
                                acc1[j] += _planes_dot(c, xa, xb, xc, xd)
                                c = c2s[j]
                                acc2[j] += _planes_dot(c, xa, xb, xc, xd)
                                c = c3s[j]
                                acc3[j] += _planes_dot(c, xa, xb, xc, xd)
                        i0 += _lane_sum(acc0)
                        i1 += _lane_sum(acc1)
                        i2 += _lane_sum(acc2)
                        i3 += _lane_sum(acc3)
                    da = act_scales[t, b * sub // act_block]
                    wi = b * sub // scale_block
                    y0 += _combine(i0, xsum[t, b], da, block_scales[ra, wi], divide)
                    y1 += _combine(i1, xsum[t, b], da, block_scales[rb, wi], divide)
                    y2 += _combine(i2, xsum[t, b], da, block_scales[rc, wi], divide)
                    y3 += _combine(i3, xsum[t, b], da, block_scales[rd, wi], divide)
                _store_quad(out, t, ra, rb, rc, rd, (y0, y1, y2, y3), 0, ts)


@njit(parallel=True, cache=True)
def _simd_kernel(flat, rs, goffs, run, m, x8, gsum, act_scales, act_block, divide,  # noqa: ANN001
                 block_scales, scale_block, tensor_scale, sub, n_items, out):  # noqa: ANN001
    """AVX2 kernel (simd_x86.isum4): same results as `_exact_kernel`. Runs of `run` groups, contiguous
    in memory (inside one code chunk, aligned with the sub-blocks), go to isum4 four rows at a time."""
    n_tok, k = x8.shape
    gps = sub // 128
    n_sub = k // sub
    n_quads = (m + 3) // 4
    per_item = (n_quads + n_items - 1) // n_items
    ts = np.float32(tensor_scale)
    xsum = np.zeros((n_tok, n_sub), np.int64)
    for t in range(n_tok):
        for b in range(n_sub):
            for gg in range(gps):
                xsum[t, b] += gsum[t, b * gps + gg]
    for item in prange(n_items):
        for quad in range(item * per_item, min(n_quads, (item + 1) * per_item)):
            r0 = quad * 4
            # a partial last quad repeats its last row (computed and stored twice, same value)
            ra, rb, rc, rd = r0, min(r0 + 1, m - 1), min(r0 + 2, m - 1), min(r0 + 3, m - 1)
            ba, bb, bc, bd = ra * rs, rb * rs, rc * rs, rd * rs
            for t in range(n_tok):
                xt = x8[t]
                y0 = y1 = y2 = y3 = np.float32(0.0)
                for b in range(n_sub):
                    i0 = i1 = i2 = i3 = 0
                    for g in range(b * gps, b * gps + gps, run):
                        go = goffs[g]
                        a0, a1, a2, a3 = isum4(flat, ba + go, bb + go, bc + go, bd + go, xt, g * 128, run,
                                               PREFETCH_ROWS * rs)
                        i0 += a0
                        i1 += a1
                        i2 += a2
                        i3 += a3
                    da = act_scales[t, b * sub // act_block]
                    wi = b * sub // scale_block
                    y0 += _combine(i0, xsum[t, b], da, block_scales[ra, wi], divide)
                    y1 += _combine(i1, xsum[t, b], da, block_scales[rb, wi], divide)
                    y2 += _combine(i2, xsum[t, b], da, block_scales[rc, wi], divide)
                    y3 += _combine(i3, xsum[t, b], da, block_scales[rd, wi], divide)
                _store_quad(out, t, ra, rb, rc, rd, (y0, y1, y2, y3), 0, ts)


@njit(cache=True)
def _lane_sums(x, gsub):  # noqa: ANN001, ANN202
    """Σ q over each 32-value stretch of every 256-value block: llama.cpp's bsums paired per lane."""
    n_tok, k = x.shape
    out = np.zeros((n_tok, k // 256, 8), np.int64)
    for t in range(n_tok):
        for b in range(k // 256):
            for lane in range(8):
                s = 0
                for i in range(32):
                    s += x[t, b * 256 + lane * 32 + i]
                out[t, b, lane] = s
    return out


@njit(cache=True, inline="always")
def _hsum8(f):  # noqa: ANN001, ANN202
    """llama.cpp's hsum_float_8: ((f4+f0) + (f6+f2)) + ((f5+f1) + (f7+f3)) in float32."""
    r0 = f[4] + f[0]
    r1 = f[5] + f[1]
    r2 = f[6] + f[2]
    r3 = f[7] + f[3]
    return (r0 + r2) + (r1 + r3)


@njit(parallel=True, cache=True)
def _q8k_kernel(flat, rs, goffs, m, x8, x16, act_scales, block_scales, scale_block,  # noqa: ANN001
                tensor_scale, n_items, out):  # noqa: ANN001
    """q8_k exactly as llama.cpp's AVX2 TQ2_0 kernel: per 256-value block 8 int32 lanes (lane l =
    bytes 4l..4l+3 of both 32-byte groups, all planes) minus the lane's Σq, converted to float32 and
    fused-multiply-added with d_w·d_a into 8 float lanes; hsum_float_8 at the end of the row.
    Portable: int16 vectors LLVM vectorizes; `_q8k_simd_kernel` is the AVX2 twin (same bits)."""
    n_tok, k = x8.shape
    n_blk = k // 256
    n_quads = (m + 3) // 4
    per_item = (n_quads + n_items - 1) // n_items
    ts = np.float32(tensor_scale)
    lsum = _lane_sums(x16, 256)
    for item in prange(n_items):
        lanes = np.zeros(32, np.int64)
        acc = np.zeros((4, 32), np.int16)
        acc0, acc1, acc2, acc3 = acc[0], acc[1], acc[2], acc[3]
        fl = np.zeros((4, 8), np.float32)
        for quad in range(item * per_item, min(n_quads, (item + 1) * per_item)):
            r0 = quad * 4
            # a partial last quad repeats its last row (computed and stored twice, same value)
            rr = (r0, min(r0 + 1, m - 1), min(r0 + 2, m - 1), min(r0 + 3, m - 1))
            ba, bb, bc, bd = rr[0] * rs, rr[1] * rs, rr[2] * rs, rr[3] * rs
            for t in range(n_tok):
                fl[:] = 0
                for b in range(n_blk):
                    g0 = 2 * b
                    for g in range(g0, g0 + 2):
                        xg = x16[t, g * 128:g * 128 + 128]
                        go = goffs[g]
                        c0s = flat[ba + go:ba + go + 32]
                        c1s = flat[bb + go:bb + go + 32]
                        c2s = flat[bc + go:bc + go + 32]
                        c3s = flat[bd + go:bd + go + 32]
                        for j in range(32):
                            xa = xg[j]
                            xb = xg[32 + j]
                            xc = xg[64 + j]
                            xd = xg[96 + j]
                            acc0[j] += _planes_dot(c0s[j], xa, xb, xc, xd)
                            acc1[j] += _planes_dot(c1s[j], xa, xb, xc, xd)
                            acc2[j] += _planes_dot(c2s[j], xa, xb, xc, xd)
                            acc3[j] += _planes_dot(c3s[j], xa, xb, xc, xd)
                    for r in range(4):
                        for lane in range(8):
                            v = 0
                            for jj in range(4):
                                v += acc[r, 4 * lane + jj]
                            lanes[8 * r + lane] = v
                        for j in range(32):
                            acc[r, j] = 0
                    da = act_scales[t, b]
                    wi = b * 256 // scale_block
                    for r in range(4):
                        d = np.float32(block_scales[rr[r], wi] * da)
                        for lane in range(8):
                            v = np.float32(lanes[8 * r + lane] - lsum[t, b, lane])
                            fl[r, lane] = fma32(v, d, fl[r, lane])
                for r in range(4):
                    out[t, rr[r]] = _hsum8(fl[r]) * ts


@njit(cache=True, inline="always")
def _quad_rows(quad, m):  # noqa: ANN001, ANN202
    """The four rows of row quad `quad`; a partial last quad repeats its last row (computed and
    stored twice, same value)."""
    r0 = quad * 4
    return r0, min(r0 + 1, m - 1), min(r0 + 2, m - 1), min(r0 + 3, m - 1)


@njit(cache=True)
def _q8k_setup(x8, x16, m, rs, scale_block, tensor_scale, n_items):  # noqa: ANN001, ANN202
    """What the SIMD q8_k kernels share: sizes, work split, paired bsums, weight-scale step, prefetch
    distance."""
    n_tok, k = x8.shape
    n_blk = k // 256
    n_quads = (m + 3) // 4
    per_item = (n_quads + n_items - 1) // n_items
    lsum32 = _lane_sums(x16, 256).astype(np.int32).reshape(n_tok, n_blk * 8)
    wstep = 1 if scale_block == 256 else 0
    return n_tok, n_blk, n_quads, per_item, np.float32(tensor_scale), lsum32, wstep, PREFETCH_ROWS * rs


@njit(cache=True, inline="always")
def _store_row(out, t, r, y, ts):  # noqa: ANN001, ANN202
    """out[t:t + len(y), r] = y · ts: one row's results for consecutive tokens."""
    for j in range(len(y)):
        out[t + j, r] = y[j] * ts


@njit(parallel=True, cache=True)
def _q8k_simd_kernel(flat, rs, goffs, m, x8, x16, act_scales, block_scales, scale_block,  # noqa: ANN001
                     tensor_scale, n_items, vnni, out):  # noqa: ANN001
    """`_q8k_kernel` with the dot products in AVX2 registers (simd_x86), with `vpdpbusd` when `vnni`.
    One token: row quads share each activation load (simd_x86.q8k_rows4). More: each row goes
    against ROW_TOKENS tokens at a time (q8k_row6), then pairs (q8k_row2; the last pair may
    overlap the one before and store the same values again). Rows are taken ROW_TILE at a time so
    that a tile's codes, read from memory once, stay in cache for every token group.
    A separate function so that hosts without AVX2 never compile the x86 intrinsics."""
    n_tok, n_blk, n_quads, per_item, ts, lsum32, wstep, ahead = _q8k_setup(x8, x16, m, rs, scale_block,
                                                                             tensor_scale, n_items)
    if n_tok == 1:
        for item in prange(n_items):
            for quad in range(item * per_item, min(n_quads, (item + 1) * per_item)):
                ra, rb, rc, rd = _quad_rows(quad, m)
                y = q8k_rows4(vnni, flat, ra * rs, rb * rs, rc * rs, rd * rs, goffs, x8[0], lsum32[0],
                              act_scales[0], block_scales[ra], block_scales[rb], block_scales[rc],
                              block_scales[rd], wstep, n_blk, ahead)
                _store_quad(out, 0, ra, rb, rc, rd, y, 0, ts)
        return
    n_six = n_tok - n_tok % ROW_TOKENS
    per_rows = (m + n_items - 1) // n_items
    for item in prange(n_items):
        for lo in range(item * per_rows, min(m, (item + 1) * per_rows), ROW_TILE):
            hi = min(m, (item + 1) * per_rows, lo + ROW_TILE)
            for t in range(0, n_six, ROW_TOKENS):
                for r in range(lo, hi):
                    _store_row(out, t, r, q8k_row6(vnni, flat, r * rs, goffs, x8, lsum32, act_scales, t,
                                                   block_scales[r], wstep, n_blk, ahead), ts)
            for t in range(n_six, n_tok, 2):
                t = min(t, n_tok - 2)
                for r in range(lo, hi):
                    _store_row(out, t, r, q8k_row2(vnni, flat, r * rs, goffs, x8, lsum32, act_scales, t,
                                                   block_scales[r], wstep, n_blk, ahead), ts)


@dataclass(frozen=True)
class KernelPlan:
    """What the numba kernels need to know about one weight, computed once (`plan_weight`)."""

    flat: np.ndarray  # the codes' bytes as one flat view
    row_stride: int
    chunk_stride: int
    groups_per_chunk: int
    group_offsets: np.ndarray  # byte offset of each 128-value group inside a row
    block_scales: np.ndarray  # float32 [out, in / scale_block]


def plan_weight(w: TernaryWeight) -> KernelPlan | None:
    """Precompute the kernel view of `w` (no copy of the codes); None for a TL1Weight (the lookup-table
    kernel reads its tiles directly)."""
    if isinstance(w, TL1Weight):
        return None
    flat, rs, cs, gpc = _codes_view(w)
    g = np.arange(w.in_features // GROUP)
    bs = np.ascontiguousarray(w.block_scales, dtype=np.float32)
    return KernelPlan(flat, rs, cs, gpc, (g // gpc) * cs + (g % gpc) * GROUP_BYTES, bs)


def ternary_matmul_numba(w: TernaryWeight, xa: PackedActivations, out: np.ndarray,
                         plan: KernelPlan | None = None, n_items: int | None = None,
                         use_simd: bool = True, use_vnni: bool = True) -> None:
    """Numba twin of `ternary_matmul_numpy` (bit-identical results, for one token or many).
    `plan` (from `plan_weight(w)`) skips the per-call checks; `n_items` (parallel work items,
    default `work_items()`) lets a caller that knows its thread count skip asking numba. The AVX2
    kernel runs where the CPU has it (`use_simd=False` forces the portable one; same results).
    A TL1Weight goes to the lookup-table kernel (tl1_lut.py) whatever the other arguments."""
    if isinstance(w, TL1Weight):
        _tl1_matmul(w, xa, out, tl1_matmul_numba)
        return
    if plan is None:
        _check(w, xa, out)
        plan = plan_weight(w)
    sub = math.gcd(xa.block, w.scale_block)
    p = plan
    ts = float(w.tensor_scale)
    items = n_items or work_items()
    simd = simd_x86.AVAILABLE and use_simd
    if not xa.divide:
        _check_q8k(w, xa, sub)
        if simd:
            _q8k_simd_kernel(p.flat, p.row_stride, p.group_offsets, w.out_features, xa.x8, xa.x16, xa.scales,
                             p.block_scales, w.scale_block, ts, items, simd_x86.VNNI and use_vnni, out)
        else:
            _q8k_kernel(p.flat, p.row_stride, p.group_offsets, w.out_features, xa.x8, xa.x16, xa.scales,
                        p.block_scales, w.scale_block, ts, items, out)
    elif simd:
        run = math.gcd(sub // GROUP, p.groups_per_chunk)
        _simd_kernel(p.flat, p.row_stride, p.group_offsets, run, w.out_features, xa.x8,
                     xa.gsum, xa.scales, xa.block, xa.divide, p.block_scales, w.scale_block, ts, sub, items,
                     out)
    else:
        _exact_kernel(p.flat, p.row_stride, p.group_offsets, w.out_features, xa.x16, xa.gsum, xa.scales,
                      xa.block, xa.divide, p.block_scales, w.scale_block, ts, sub, items, out)


def _tl1_matmul(w: TL1Weight, xa: PackedActivations, out: np.ndarray, kernel) -> None:  # noqa: ANN001
    """Run a tl1_lut kernel on packed activations (per-token scales, K order)."""
    if not xa.divide or xa.block != w.in_features:
        raise ValueError(f"{w.name}: TL1 weights need per-token activation scales (i8_s, absmax_token), got "
                         f"{'divided' if xa.divide else 'multiplied'} scales per {xa.block} values")
    if tuple(xa.plane_shifts) != tuple(w.plane_shifts):
        raise ValueError(f"{w.name}: activations packed for plane shifts {xa.plane_shifts}, weight has "
                         f"{w.plane_shifts}")
    kernel(w, xa.x8, xa.scales, out)


def _check_q8k(w: TernaryWeight, xa: PackedActivations, sub: int) -> None:
    if sub != 256:
        raise ValueError(f"{w.name}: q8_k activations need weight scale blocks of 256 or K, got "
                         f"{w.scale_block}")


def work_items() -> int:
    """Parallel work items per kernel call: a few per thread for load balance, one when single-threaded
    (each item allocates its small scratch once)."""
    n = numba.get_num_threads()
    return 1 if n == 1 else 4 * n


# ------------------------------------------------------------------------------------------------
# dense matmul (F16 lm_head / embeddings used as output, F32 or F16 dense linears)
# ------------------------------------------------------------------------------------------------
def dense_matmul_numpy(w: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """out[T, out] = x[T, K] · W[out, K]ᵀ with W float16 or float32, products and sums in float32."""
    out[...] = np.asarray(x, np.float32) @ np.asarray(w, np.float32).T


@njit(parallel=True, cache=True, fastmath=True)
def _dense_f16_kernel(wbits, x, n_items, out):  # noqa: ANN001
    m, k = wbits.shape
    t = x.shape[0]
    per_item = (m + n_items - 1) // n_items
    for item in prange(n_items):
        wr = np.empty(k, np.float32)
        for r in range(item * per_item, min(m, (item + 1) * per_item)):
            src = wbits[r]
            if t == 1:  # decode: convert while multiplying, one pass over the row
                xi = x[0]
                s = np.float32(0.0)
                for j in range(k):
                    s += f16_bits_to_f32(src[j]) * xi[j]
                out[0, r] = s
                continue
            for j in range(k):
                wr[j] = f16_bits_to_f32(src[j])
            for i in range(t):
                xi = x[i]
                s = np.float32(0.0)
                for j in range(k):
                    s += wr[j] * xi[j]
                out[i, r] = s


@njit(parallel=True, cache=True)
def _dense_f16_tile_kernel(wbits, x, n_items, out):  # noqa: ANN001
    """`_dense_f16_kernel` with dense_simd's tiles (C-contiguous operands, K % 32 == 0): one token
    row by row, several in tiles of 4 rows × 4 tokens (a partial last tile repeats its last row)."""
    m, k = wbits.shape
    t = x.shape[0]
    rows = 1 if t == 1 else 4
    n_tiles = (m + rows - 1) // rows
    per_item = (n_tiles + n_items - 1) // n_items
    n_four = t - t % 4
    for item in prange(n_items):
        for tile in range(item * per_item, min(n_tiles, (item + 1) * per_item)):
            if t == 1:
                out[0, tile] = f16_tile_1x1(wbits, tile * k, x, 0, k, k)[0]
                continue
            ra, rb, rc, rd = _quad_rows(tile, m)
            oa, ob, oc, od = ra * k, rb * k, rc * k, rd * k
            for t0 in range(0, n_four, 4):
                y = f16_tile_4x4(wbits, oa, ob, oc, od, x, t0, k, k)
                for j in range(4):
                    out[t0 + j, ra] = y[4 * j]
                    out[t0 + j, rb] = y[4 * j + 1]
                    out[t0 + j, rc] = y[4 * j + 2]
                    out[t0 + j, rd] = y[4 * j + 3]
            for tt in range(n_four, t):
                y0, y1, y2, y3 = f16_tile_4x1(wbits, oa, ob, oc, od, x, tt, k, k)
                out[tt, ra] = y0
                out[tt, rb] = y1
                out[tt, rc] = y2
                out[tt, rd] = y3


@njit(parallel=True, cache=True, fastmath=True)
def _dense_f32_kernel(w, x, out):  # noqa: ANN001
    m, k = w.shape
    t = x.shape[0]
    for r in prange(m):
        wr = w[r]
        for i in range(t):
            xi = x[i]
            s = np.float32(0.0)
            for j in range(k):
                s += wr[j] * xi[j]
            out[i, r] = s


def dense_matmul_numba(w: np.ndarray, x: np.ndarray, out: np.ndarray, n_items: int | None = None) -> None:
    """Numba twin of `dense_matmul_numpy`: fp16 rows are converted on the fly (no float32 copy of the
    matrix is ever made); float32 sums in a vectorized order (differs from numpy's by rounding only)."""
    if w.dtype == np.float16:
        bits = w.view(np.uint16)
        if F16C and w.shape[1] % DENSE_CHUNK == 0 and w.flags.c_contiguous and x.flags.c_contiguous:
            _dense_f16_tile_kernel(bits, x, n_items or work_items(), out)
        else:
            _dense_f16_kernel(bits, x, n_items or work_items(), out)
    elif w.dtype == np.float32:
        _dense_f32_kernel(w, x, out)
    else:
        raise ValueError(f"dense matmul supports float16/float32 weights, got {w.dtype}")
