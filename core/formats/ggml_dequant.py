"""Plain numpy reference decoders: GGUF tensor bytes -> float32, for every type Tritium reads.

These follow the byte layouts of llama.cpp (ggml-quants.c `dequantize_row_*`) and bitnet.cpp (x86 I2_S),
as documented in FORMATS.md, and are the ground truth that tests compare the runtime layouts against.
`ne` is the ggml shape (ne0 = contiguous/input dim first); results come back in numpy order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tritium.core.formats.ggml_types import QK_K

TQ2_0_BLOCK_BYTES = 66  # qs[64], fp16 d
TQ1_0_BLOCK_BYTES = 54  # qs[48], qh[4], fp16 d
Q8_0_BLOCK = 32
Q8_0_BLOCK_BYTES = 34  # fp16 d, int8 qs[32]
_POW3 = np.array([1, 3, 9, 27, 81], dtype=np.uint8)


def _count(ne: tuple[int, ...]) -> int:
    n = 1
    for d in ne:
        n *= d
    return n


def _shape(ne: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(reversed(ne))


def dequant_f32(raw: np.ndarray, ne: tuple[int, ...]) -> np.ndarray:
    return raw.view("<f4").astype(np.float32).reshape(_shape(ne))


def dequant_f16(raw: np.ndarray, ne: tuple[int, ...]) -> np.ndarray:
    return raw.view("<f2").astype(np.float32).reshape(_shape(ne))


def dequant_bf16(raw: np.ndarray, ne: tuple[int, ...]) -> np.ndarray:
    """bfloat16 is the top half of a float32."""
    return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32).reshape(_shape(ne))


def dequant_q8_0(raw: np.ndarray, ne: tuple[int, ...]) -> np.ndarray:
    """Q8_0: blocks of 32 values, `fp16 d; int8 qs[32]`, value = qs * d."""
    blocks = raw.reshape(-1, Q8_0_BLOCK_BYTES)
    d = blocks[:, :2].copy().view("<f2").astype(np.float32)
    qs = blocks[:, 2:].view(np.int8).astype(np.float32)
    return (qs * d).reshape(_shape(ne))


def tq2_0_trits(raw: np.ndarray, n_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """TQ2_0 -> (int8 ternary [n_blocks, 256], float32 d [n_blocks]).

    Byte qs[32h + m], bit pair l (shift 2l) holds element 128h + 32l + m as q + 1.
    """
    blocks = raw.reshape(n_blocks, TQ2_0_BLOCK_BYTES)
    qs = blocks[:, :64].reshape(n_blocks, 2, 1, 32)  # [block, h, l, m]
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)
    t = ((qs >> shifts) & 3).reshape(n_blocks, QK_K).astype(np.int8) - 1
    d = blocks[:, 64:66].copy().view("<f2").astype(np.float32).reshape(n_blocks)
    return t, d


def tq1_0_trits(raw: np.ndarray, n_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """TQ1_0 -> (int8 ternary [n_blocks, 256], float32 d [n_blocks]).

    Base-3 digits t = q + 1, 5 per byte in qs (4 per byte in qh), most significant digit first, stored as
    ceil(v * 256 / 243). Digit n of a byte b is ((uint8)(b * 3^n) * 3) >> 8. Element order:
    qs[0..31] -> 32n + m; qs[32..47] -> 160 + 16n + m; qh[0..3] -> 240 + 4n + m.
    """
    blocks = raw.reshape(n_blocks, TQ1_0_BLOCK_BYTES)

    def digits(b: np.ndarray, n_digits: int) -> np.ndarray:
        # [block, bytes] -> [block, digit n, bytes]; uint8 multiply wraps mod 256 on purpose
        prod = b[:, None, :] * _POW3[:n_digits].reshape(1, n_digits, 1)
        return ((prod.astype(np.uint16) * 3) >> 8).astype(np.uint8)

    t = np.concatenate([
        digits(blocks[:, 0:32], 5).reshape(n_blocks, 160),
        digits(blocks[:, 32:48], 5).reshape(n_blocks, 80),
        digits(blocks[:, 48:52], 4).reshape(n_blocks, 16),
    ], axis=1).astype(np.int8) - 1
    d = blocks[:, 52:54].copy().view("<f2").astype(np.float32).reshape(n_blocks)
    return t, d


def i2s_codes(raw: np.ndarray, ne: tuple[int, ...]) -> tuple[np.ndarray, np.float32]:
    """x86 I2_S -> (uint8 codes [M, K] in {0,1,2,(3)}, float32 scale).

    Blocks of 128 row-major values in 32 bytes; byte j holds values j, 32+j, 64+j, 96+j in bits 7-6, 5-4,
    3-2, 1-0. The one per-tensor float32 scale sits at byte K*M/4, then 28 padding bytes.
    """
    K = ne[0]
    M = _count(ne) // K
    n = K * M // 4
    packed = raw[:n].reshape(-1, 32)
    planes = [(packed >> s) & 3 for s in (6, 4, 2, 0)]
    codes = np.concatenate(planes, axis=1).reshape(M, K)
    scale = raw[n:n + 4].copy().view("<f4")[0]
    return codes, np.float32(scale)


def dequant_i2s(raw: np.ndarray, ne: tuple[int, ...]) -> np.ndarray:
    codes, scale = i2s_codes(raw, ne)
    return ((codes.astype(np.float32) - 1) * scale).reshape(_shape(ne))


def dequant_tq2_0(raw: np.ndarray, ne: tuple[int, ...]) -> np.ndarray:
    t, d = tq2_0_trits(raw, _count(ne) // QK_K)
    return (t.astype(np.float32) * d[:, None]).reshape(_shape(ne))


def dequant_tq1_0(raw: np.ndarray, ne: tuple[int, ...]) -> np.ndarray:
    t, d = tq1_0_trits(raw, _count(ne) // QK_K)
    return (t.astype(np.float32) * d[:, None]).reshape(_shape(ne))


DEQUANTIZERS: dict[str, Callable[[np.ndarray, tuple[int, ...]], np.ndarray]] = {
    "F32": dequant_f32, "F16": dequant_f16, "BF16": dequant_bf16, "Q8_0": dequant_q8_0,
    "TQ1_0": dequant_tq1_0, "TQ2_0": dequant_tq2_0, "I2_S": dequant_i2s,
}


def dequantize(raw: np.ndarray, type_name: str, ne: tuple[int, ...]) -> np.ndarray:
    """float32 values of a tensor in numpy order (reference path; always copies)."""
    try:
        fn = DEQUANTIZERS[type_name]
    except KeyError:
        raise NotImplementedError(f"no reference decoder for ggml type {type_name}") from None
    return fn(raw, ne)
