"""Helpers for the GGUF format tests: tiny model configs and files, and the bitnet.cpp fixture generator.

(A uniquely named module rather than a conftest, so that test files can import it by name.)
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
from tritium.core.formats.gguf_reader import read_gguf
from tritium.core.formats.gguf_writer import TensorPlan, spm_test_vocab, write_bitnet_gguf, write_gguf
from tritium.core.formats.synthetic_weights import SyntheticBitNetWeights
from tritium.core.model.config import ModelConfig

BITNETCPP_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bitnetcpp"
FIXTURE_NAMES = ("bitnet-b158-tiny", "bitnet-gqa-tiny")


def tiny_config(arch: str = "bitnet", **kw: object) -> ModelConfig:
    """1 layer, n_embd = n_ff = 256 (one TQ block per row), GQA 4/2, 300-token SPM test vocab."""
    base = dict(arch=arch, n_vocab=300, n_embd=256, n_layer=1, n_head=4, n_head_kv=2, n_ff=256, n_ctx=512,
                rms_eps=1e-5, rope_base=10000.0)
    base.update(kw)
    return ModelConfig(**base)  # type: ignore[arg-type]


def write_tiny(path: Path, linear_type: str = "TQ2_0", *, arch: str | None = None, seed: int = 0,
               config: ModelConfig | None = None, with_output: bool = False, **kw: object) -> Path:
    """Write a tiny synthetic BitNet GGUF; `kw` goes to write_bitnet_gguf."""
    if config is None:
        config = tiny_config(arch or ("bitnet-b1.58" if linear_type == "I2_S" else "bitnet"))
    weights = SyntheticBitNetWeights(config, seed, with_output=with_output)
    write_bitnet_gguf(path, config, weights, linear_type=linear_type,
                      tokenizer=spm_test_vocab(config.n_vocab), name="tiny", **kw)  # type: ignore[arg-type]
    return path


def load_gen_fixtures():
    """tests/fixtures/bitnetcpp/gen_fixtures.py as a module (its weights are the fixtures' ground truth)."""
    name = "bitnetcpp_gen_fixtures"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BITNETCPP_FIXTURES / "gen_fixtures.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def rewritten(src: Path, dst: Path, *, meta: dict | None = None, drop_meta: tuple[str, ...] = (),
              tensors: dict[str, TensorPlan | None] | None = None, arch: str | None = None) -> Path:
    """Copy a GGUF with metadata changed/dropped and tensors replaced (None = dropped) or added."""
    f = read_gguf(src)
    md = {k: v for k, v in f.metadata.items() if k not in drop_meta}
    types = {k: v for k, v in f.value_types.items() if k not in (meta or {})}
    md.update(meta or {})
    plans: list[TensorPlan] = []
    for name, t in f.tensors.items():
        raw = np.array(f.raw(name))
        plans.append(TensorPlan(name, t.shape, t.type.name, lambda raw=raw: raw))
    changes = dict(tensors or {})
    plans = [changes.pop(p.name, p) for p in plans]
    plans = [p for p in plans if p is not None] + [p for p in changes.values() if p is not None]
    write_gguf(dst, arch or str(f.metadata["general.architecture"]), md, plans, value_types=types)
    return dst
