"""The runtime view of a model's weights: memory-mapped where the file layout allows it.

Every ternary matrix, whatever its file format, is presented to the kernels in one packed layout
(`TernaryWeight`), so one family of kernels serves I2_S, TQ2_0, TQ1_0 and Hugging Face checkpoints.
I2_S and TQ2_0 already store that layout (only the bit order of the planes differs) and stay views of
the file; TQ1_0 and HF weights are repacked once at load time into the same compact 2-bit form.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Bit shift of plane p (p = 0..3) inside a byte, per source layout.
I2S_PLANE_SHIFTS = (6, 4, 2, 0)  # bitnet.cpp x86 I2_S: value j in bits 7..6
TQ2_PLANE_SHIFTS = (0, 2, 4, 6)  # llama.cpp TQ2_0: value 32*l + m in bits 2l..2l+1
GROUP = 128  # values per 32-byte group
GROUP_BYTES = 32


@dataclass
class TernaryWeight:
    """W[out, in] = (code - 1) * block_scales[row, k // scale_block] * tensor_scale.

    `codes` is uint8 [out, in // 4] (it may be a strided view into the file). Each row is cut into
    groups of 128 values stored in 32 bytes: byte j of a group holds the 2-bit codes of values
    j, 32+j, 64+j and 96+j (planes 0..3) at bit shifts `plane_shifts`. Codes 0, 1, 2 mean -1, 0, +1.
    """

    name: str
    out_features: int
    in_features: int
    codes: np.ndarray
    plane_shifts: tuple[int, int, int, int]
    block_scales: np.ndarray  # float32 [out, in // scale_block]
    scale_block: int  # 256 for TQ types (one fp16 d per block), in_features for one scale per row/tensor
    tensor_scale: float = 1.0  # applied after the matmul (llama.cpp `<w>.scale`, HF `weight_scale`)

    def ternary(self) -> np.ndarray:
        """The int8 matrix of -1/0/+1 values, [out, in] (reference path and tests only)."""
        groups = self.codes.reshape(self.out_features, -1, GROUP_BYTES)
        planes = [((groups >> s) & 3) for s in self.plane_shifts]
        values = np.concatenate(planes, axis=2).reshape(self.out_features, self.in_features)
        return values.astype(np.int8) - 1

    def dequantize(self) -> np.ndarray:
        """W as float32 [out, in] (reference path and tests only)."""
        scales = np.repeat(self.block_scales.astype(np.float32), self.scale_block, axis=1)
        return self.ternary().astype(np.float32) * scales * np.float32(self.tensor_scale)

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes + self.block_scales.nbytes)


@dataclass
class TL1Weight(TernaryWeight):
    """A Tritium TL1 matrix served in place by the lookup-table kernel (core/compute/tl1_lut.py).

    `tiles` is a uint8 view of the file, [out/16, in/32, 16 rows, 8 bytes]: byte b of a tile row holds
    the pair index 3*t0 + t1 + 4 of values (2b, 2b+1) of the tile's 32 (high nibble) and of values
    (2b+2, 2b+3) (low nibble). There are no 2-bit `codes` (None): kernels that read codes must not get
    a TL1Weight. `plane_shifts` is the identity (0, 2, 4, 6) so packed activations keep their order;
    `block_scales` [out, 1] holds the one per-tensor scale, scale_block = in_features.
    """

    tiles: np.ndarray | None = None

    def rows(self, r0: int, r1: int) -> TL1Weight:
        """The rows r0..r1 (multiples of 16, or r1 = out_features) as a TL1Weight viewing the same tiles."""
        assert self.tiles is not None
        bm = self.tiles.shape[2]
        if r0 % bm or (r1 % bm and r1 != self.out_features):
            raise ValueError(f"{self.name}: TL1 row ranges must start and end on multiples of {bm}")
        return TL1Weight(self.name, r1 - r0, self.in_features, None, self.plane_shifts,
                         self.block_scales[r0:r1], self.scale_block, self.tensor_scale,
                         tiles=self.tiles[r0 // bm:(r1 + bm - 1) // bm])

    def ternary(self) -> np.ndarray:
        """The int8 matrix of -1/0/+1 values, [out, in] (reference path and tests only)."""
        from tritium.core.formats.tl1_layout import tl1_trits  # formats builds on this module

        assert self.tiles is not None
        return tl1_trits(self.tiles.reshape(-1), self.out_features, self.in_features)

    @property
    def nbytes(self) -> int:
        assert self.tiles is not None
        return int(self.tiles.nbytes + self.block_scales.nbytes)


@dataclass
class DenseWeight:
    """A float matrix [out, in] (F32/F16/BF16/Q8_0 sources, dequantized to float16 or float32)."""

    name: str
    data: np.ndarray

    @property
    def out_features(self) -> int:
        return int(self.data.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.data.shape[1])

    def dequantize(self) -> np.ndarray:
        return np.asarray(self.data, dtype=np.float32)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


Linear = TernaryWeight | DenseWeight


@dataclass
class LayerWeights:
    """One transformer block. Norm weights are float32 vectors."""

    attn_norm: np.ndarray
    wq: Linear
    wk: Linear
    wv: Linear
    attn_sub_norm: np.ndarray
    wo: Linear
    ffn_norm: np.ndarray
    w_gate: Linear
    w_up: Linear
    ffn_sub_norm: np.ndarray
    w_down: Linear

    def linears(self) -> dict[str, Linear]:
        return {
            "wq": self.wq, "wk": self.wk, "wv": self.wv, "wo": self.wo,
            "w_gate": self.w_gate, "w_up": self.w_up, "w_down": self.w_down,
        }


@dataclass
class ModelWeights:
    """All weights. `token_embd` is [n_vocab, n_embd] float16/float32; `output` is None when tied."""

    token_embd: np.ndarray
    output_norm: np.ndarray
    layers: list[LayerWeights]
    output: np.ndarray | None = None
    keep_alive: list[object] = field(default_factory=list)  # mmaps/files the views point into

    @property
    def lm_head(self) -> np.ndarray:
        return self.token_embd if self.output is None else self.output
