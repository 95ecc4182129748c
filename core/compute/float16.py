"""IEEE half precision inside numba kernels, which have no float16 type on the CPU.

fp16 data (the F16 embedding / lm_head, an fp16 KV cache) is handed to kernels as its uint16 bit
pattern; these helpers convert bit patterns exactly, and round float32 values to the nearest fp16
value (ties to even), as F16C's `vcvtps2ph` does in llama.cpp and bitnet.cpp. They are vectorizable
(branch-free selects only). Infinities and NaNs are not modelled: every fp16 value the engine sees
is finite (weights, K/V, probabilities, normed hidden states); a float32 beyond the fp16 range
becomes the inf bit pattern, which `f16_bits_to_f32` does not decode as inf.
"""

from __future__ import annotations

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


@intrinsic
def u32_as_f32(typingctx, bits):  # noqa: ANN001, ANN201 - numba intrinsic signature
    """Reinterpret a uint32 bit pattern as float32 (no conversion)."""
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def f32_as_u32(typingctx, value):  # noqa: ANN001, ANN201 - numba intrinsic signature
    """Reinterpret a float32 as its uint32 bit pattern (no conversion)."""
    sig = types.uint32(types.float32)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


_TWO_POW_112 = np.float32(2.0**112)


def _host_has_f16c() -> bool:
    try:
        return bool(llvm.get_host_cpu_features().get("f16c", False))
    except RuntimeError:
        return False


F16C = _host_has_f16c()


@intrinsic
def _f16_bits_to_f32_hw(typingctx, bits):  # noqa: ANN001, ANN201 - numba intrinsic signature
    """fpext of the half-precision pattern: one `vcvtph2ps` lane on F16C hosts (exact, like the
    arithmetic twin below, and what ggml's F16 dot products use)."""
    sig = types.float32(types.uint16)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return sig, codegen


@njit(cache=True, inline="always")
def f16_bits_to_f32_arith(h):  # noqa: ANN001, ANN201 - numba scalar helper
    """Exact value of the fp16 bit pattern `h` (uint16) as float32 (finite values), in integer and
    float arithmetic: the portable path, for hosts without F16C."""
    hu = np.uint32(h)
    sign = (hu & np.uint32(0x8000)) << np.uint32(16)
    # Move exponent+mantissa into float32 position; the result is the value times 2^-112, and the
    # multiply rescales it exactly (this also covers zero and subnormals without a branch).
    mag = u32_as_f32((hu & np.uint32(0x7FFF)) << np.uint32(13)) * _TWO_POW_112
    return u32_as_f32(f32_as_u32(mag) | sign)


@njit(cache=True, inline="always")
def f16_bits_to_f32(h):  # noqa: ANN001, ANN201 - numba scalar helper
    """Exact value of the fp16 bit pattern `h` (uint16) as float32 (finite values)."""
    if F16C:  # a compile-time constant: numba folds the branch away
        return _f16_bits_to_f32_hw(np.uint16(h))
    return f16_bits_to_f32_arith(h)


@njit(cache=True, inline="always")
def f32_to_f16_bits(x):  # noqa: ANN001, ANN201 - numba scalar helper
    """The fp16 bit pattern nearest to float32 `x` (round half to even; |x| >= 65520 gives inf)."""
    bits = f32_as_u32(np.float32(x))
    sign = (bits >> np.uint32(16)) & np.uint32(0x8000)
    a = bits & np.uint32(0x7FFFFFFF)
    # fp16 subnormal range (|x| < 2^-14): adding 0.5 puts the 2^-24 quantum at the last float32 bit,
    # so the float adder rounds half to even for us; the mantissa bits are the fp16 pattern.
    sub = f32_as_u32(u32_as_f32(a) + np.float32(0.5)) - np.uint32(0x3F000000)
    # normal range: round the 23-bit mantissa to 10 bits (half to even), then rebias the exponent.
    rounded = a + np.uint32(0x0FFF) + ((a >> np.uint32(13)) & np.uint32(1))
    norm = (rounded - np.uint32(0x38000000)) >> np.uint32(13)
    norm = min(norm, np.uint32(0x7C00))
    mag = sub if a < np.uint32(0x38800000) else norm
    return np.uint16(sign | mag)


@njit(cache=True, inline="always")
def round_f16(x):  # noqa: ANN001, ANN201 - numba scalar helper
    """float32 `x` rounded to the nearest fp16 value, returned as float32."""
    return f16_bits_to_f32(f32_to_f16_bits(x))
