"""Fused multiply-add in float32, as the peers' SIMD kernels do it (one rounding), plus its numpy twin.

llama.cpp's TQ2_0 kernel accumulates its float lanes with `vfmadd231ps`; reproducing that rounding
needs a real fused operation. `fma32` is LLVM's `llvm.fma.f32` inside numba (a single instruction on
FMA hardware, a correctly rounded libm call elsewhere). `fma32_numpy` computes the same correctly
rounded result with numpy: the product is exact in float64, and the float64 sum is corrected with
its rounding error (TwoSum) where it lands exactly on a float32 rounding boundary.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def fma32(typingctx, a, b, c):  # noqa: ANN001, ANN201 - numba intrinsic
    """float32(a·b + c) with a single rounding."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        f32 = ir.FloatType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f32, [f32, f32, f32]),
                                            "llvm.fma.f32")
        return builder.call(fn, args)

    return sig, codegen


def fma32_numpy(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Elementwise float32(a·b + c) with a single rounding (numpy twin of `fma32`)."""
    a64, b64, c64 = (np.asarray(v, np.float32).astype(np.float64) for v in (a, b, c))
    p = a64 * b64  # exact: 24 + 24 significant bits
    s = p + c64
    bb = s - p
    err = (p - (s - bb)) + (c64 - bb)  # s + err == p + c exactly
    r = s.astype(np.float32)
    # float32 rounding of s is wrong only if s sits exactly halfway between two float32 values and the
    # discarded error says which side the true value is on
    up = np.nextafter(r, np.float32(np.inf))
    down = np.nextafter(r, np.float32(-np.inf))
    mid_up = (r.astype(np.float64) + up.astype(np.float64)) / 2
    mid_down = (r.astype(np.float64) + down.astype(np.float64)) / 2
    r = np.where((s == mid_up) & (err > 0), up, r)
    r = np.where((s == mid_down) & (err < 0), down, r)
    return r.astype(np.float32)
