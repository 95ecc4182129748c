"""Deterministic synthetic BitNet weights, for test files, the demo model and benchmarks.

The scheme is the one of tests/fixtures/bitnetcpp (gen_fixtures.py `make_weights`): tensor `idx` (file
order, token_embd = 0) draws from `numpy.random.default_rng([seed, idx])`; ternary tensors are the absmean
quantization of a latent N(0, (gain/sqrt(fan_in))^2) with the scale rounded to fp16 first (so q*scale is
exact in F16 and every TQ block's d equals it); norms are 1 + 0.1*N(0,1) (output_norm with random signs);
the embedding is N(0, (2/sqrt(n_embd))^2) with the special/byte rows shrunk. The values are built on
access, one tensor at a time, so writing a large model never holds more than one tensor in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
from tritium.core.formats.bitnet_tensors import LINEAR_NAMES, bitnet_shapes, bitnet_tensor_names
from tritium.core.formats.ggml_encode import TernaryMatrix
from tritium.core.model.config import ModelConfig

AUX_ROWS = 259  # <unk>, <s>, </s> and the 256 byte tokens of the SPM test vocab
AUX_ROW_SCALE = 0.25
GAINS = {"attn_output": 0.25, "ffn_down": 16.0}  # keep greedy decoding varied (see the fixtures' README)


class SyntheticBitNetWeights(Mapping[str, "np.ndarray | TernaryMatrix"]):
    """A lazy Mapping GGUF tensor name -> float array or TernaryMatrix, deterministic in (config, seed)."""

    def __init__(self, config: ModelConfig, seed: int = 0, *, with_output: bool = False) -> None:
        self.config = config
        self.seed = seed
        self.names = bitnet_tensor_names(config.n_layer, with_output=with_output)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.shapes = bitnet_shapes(config)

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, name: object) -> bool:  # Mapping's default would build the tensor
        return name in self.index

    def __getitem__(self, name: str) -> np.ndarray | TernaryMatrix:
        if name not in self.index:
            raise KeyError(name)
        shape = self.shapes[name]
        rng = np.random.default_rng([self.seed, self.index[name]])
        role = name.split(".")[-2]
        if name in ("token_embd.weight", "output.weight"):
            e = rng.standard_normal(shape, dtype=np.float32) * np.float32(2.0 / np.sqrt(self.config.n_embd))
            e[:AUX_ROWS] *= np.float32(AUX_ROW_SCALE)
            return e.astype(np.float16).astype(np.float32)
        if role in LINEAR_NAMES:
            gain = GAINS.get(role, 1.0)
            w = rng.standard_normal(shape, dtype=np.float32) * np.float32(gain / np.sqrt(shape[1]))
            s = float(np.float16(max(float(np.abs(w).mean(dtype=np.float64)), 1e-5)))
            q = np.clip(np.rint(w / np.float32(s)), -1, 1).astype(np.int8)
            return TernaryMatrix(q, s)
        g = 1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)
        if name == "output_norm.weight":
            g *= rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=shape)
        return g.astype(np.float32)
