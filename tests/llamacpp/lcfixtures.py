"""Access to the llama.cpp fixtures (tests/fixtures/llamacpp) and their generator, for the tests here.

The generator script is loaded from its file (tests/fixtures is not a package), so the tests and the script
share one definition of the models, the variants and the comparison helpers.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LLAMACPP_FIXTURES = FIXTURES / "llamacpp"
GENERATOR = FIXTURES / "make_llamacpp_fixtures.py"

# (model, variant) pairs the engine is checked on; "f32" is regenerated at test time (not committed).
CASES = [
    ("tq-mha-tiny", "tq2_0"),
    ("tq-mha-tiny", "tq1_0"),
    ("tq-mha-tiny", "tq2_0-scale"),
    ("tq-gqa-tiny", "tq2_0"),
    ("tq-gqa-tiny", "tq1_0"),
    ("tq-mha-tiny", "f32"),
]


def generator() -> ModuleType:
    """tests/fixtures/make_llamacpp_fixtures.py as a module (imported once)."""
    name = "make_llamacpp_fixtures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, GENERATOR)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


@cache
def ref(model: str) -> dict:
    """The model's ref.json (config, files and sha256, prompts, greedy ids, variant results)."""
    return json.loads((LLAMACPP_FIXTURES / f"{model}.ref.json").read_text())


def tokenizer_cases() -> list[dict]:
    return json.loads((LLAMACPP_FIXTURES / "tokenizer.json").read_text())["cases"]


def random_tokens(model: str) -> np.ndarray:
    return np.load(LLAMACPP_FIXTURES / f"{model}.random.tokens.npy")


def random_logits(model: str, variant: str) -> np.ndarray:
    """llama.cpp's logits [64, n_vocab] for the random input; TQ1_0 is bit-identical to TQ2_0."""
    r = ref(model)
    if variant in ("tq2_0", "tq1_0"):
        return np.load(LLAMACPP_FIXTURES / f"{model}.random.logits.npy")
    return np.load(LLAMACPP_FIXTURES / r["variants"][variant]["random_logits_file"])


def greedy_ids(model: str, variant: str, prompt_index: int) -> list[int]:
    r = ref(model)
    if variant == "tq2_0":
        return r["prompts"][prompt_index]["greedy_token_ids"]
    return r["variants"][variant]["prompts"][prompt_index]["greedy_token_ids"]


def gguf_path(model: str, variant: str, scratch: Path) -> Path:
    """The fixture GGUF; uncommitted variants are regenerated into `scratch` and their sha256 checked."""
    info = ref(model)["files"][variant]
    if info["committed"]:
        return LLAMACPP_FIXTURES / info["file"]
    path = scratch / info["file"]
    if not path.exists():
        gen = generator()
        gen.write_gguf(model, variant, path)
        if gen.sha256(path) != info["sha256"]:
            raise AssertionError(f"regenerated {path.name} differs from the one llama.cpp was run on")
    return path


def top2_margins(logits: np.ndarray) -> np.ndarray:
    part = np.sort(logits, axis=-1)
    return part[..., -1] - part[..., -2]


def agreement(ours: np.ndarray, peer: np.ndarray, margin: float = 0.1) -> dict[str, float]:
    """Per-position cosine, abs diffs and argmax agreement where the peer's top-2 margin > `margin`."""
    a, b = ours.astype(np.float64), peer.astype(np.float64)
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    sure = top2_margins(peer) > margin
    same = ours.argmax(-1) == peer.argmax(-1)
    d = np.abs(a - b)
    return {
        "min_cosine": float(cos.min()),
        "max_abs_diff": float(d.max()),
        "mean_abs_diff": float(d.mean()),
        "argmax_agree_all": float(same.mean()),
        "n_sure": int(sure.sum()),
        "argmax_mismatch_sure": [int(i) for i in np.flatnonzero(sure & ~same)],
    }
