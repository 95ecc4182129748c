"""Tritium's logits on the Hugging Face fixtures against real transformers (BitNetForCausalLM, torch CPU,
float32), recorded by tests/fixtures/make_hf_fixtures.py.

The bar (issue #3): at every position of a 64-token input, cosine >= 0.999 and the same argmax wherever
the peer's top-2 margin > 0.1; a 32-token greedy continuation identical to `generate(do_sample=False)`.
Max/mean absolute differences are reported (`pytest -s` prints them) and bounded loosely.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hf_fixtures import (  # noqa: E402
    HF_FIXTURES,
    NAMES,
    derive_f32_master,
    derive_unpacked_ternary,
    reference,
    reference_logits,
)

compute = pytest.importorskip("tritium.core.compute", reason="the compute runtime is not in the tree yet")
from tritium.core.formats.hf_model import read_hf_folder  # noqa: E402
from tritium.core.model.loader import load_model  # noqa: E402

MARGIN = 0.1
MIN_COSINE = 0.999
# Per-token int8 activation rounding is discontinuous: when a value sits within float32 ulps of a .5
# boundary, any different summation order can flip one int8 code, and the flip moves later logits by
# up to ~0.1-0.2 on these models (measured: reference_forward in float64 vs transformers float32).
# So the max-abs bound is loose (a quarter of the peer logits' std, ~0.5); without a flip the runtime
# agrees to ~5e-6. A layout or scale mistake gives errors of the order of the std itself.
MAX_ABS_OF_STD = 0.25


def compare(got: np.ndarray, want: np.ndarray, label: str) -> dict[str, float]:
    """Assert the issue's bar and return the measured numbers."""
    assert got.shape == want.shape, label
    assert np.all(np.isfinite(got)), label
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    top2 = np.sort(want, axis=1)[:, -2:]
    decisive = (top2[:, 1] - top2[:, 0]) > MARGIN
    same = got.argmax(1) == want.argmax(1)
    diff = np.abs(got - want)
    stats = {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "min_cos": float(cos.min()),
             "argmax_agree": float(same.mean()), "decisive": int(decisive.sum())}
    print(f"\n{label}: {stats}")
    assert cos.min() >= MIN_COSINE, f"{label}: cosine {cos.min()} at position {cos.argmin()}"
    bad = np.flatnonzero(decisive & ~same)
    assert bad.size == 0, f"{label}: argmax differs at positions {bad.tolist()} (peer margin > {MARGIN})"
    assert diff.max() < MAX_ABS_OF_STD * want.std(), f"{label}: max abs diff {diff.max()}"
    return stats


def runtime_logits(model, ids: list[int]) -> np.ndarray:  # noqa: ANN001
    rt = compute.Runtime(model.config, model.weights, threads=2)
    return rt.eval(rt.new_sequence(), ids, all_logits=True)


@pytest.mark.parametrize("name", NAMES)
def test_runtime_logits_match_transformers_at_every_position(name):
    model = load_model(HF_FIXTURES / name)
    ref = reference(name)
    compare(runtime_logits(model, ref["random_ids"]), reference_logits(name), f"{name} runtime")


@pytest.mark.parametrize("name", NAMES)
def test_reference_forward_matches_transformers(name):
    from tritium.core.compute.reference import reference_forward

    parts = read_hf_folder(HF_FIXTURES / name)
    ref = reference(name)
    got = reference_forward(parts.config, parts.weights, ref["random_ids"])
    compare(got, reference_logits(name), f"{name} reference_forward")


@pytest.mark.parametrize("name", NAMES)
def test_greedy_continuation_matches_transformers_generate(name):
    model = load_model(HF_FIXTURES / name)
    ref = reference(name)
    prompt = model.tokenizer.encode(ref["prompt"])
    assert prompt == ref["prompt_ids"] == ref["prompt_ids_autotokenizer"]
    rt = compute.Runtime(model.config, model.weights, threads=2)
    seq = rt.new_sequence()
    logits = rt.eval(seq, prompt)
    out: list[int] = []
    for _ in range(len(ref["greedy_ids"])):
        out.append(int(np.argmax(logits[-1])))
        logits = rt.eval(seq, [out[-1]])
    assert out == ref["greedy_ids"], f"{name}: greedy {out} vs transformers {ref['greedy_ids']}"


def test_chat_template_renders_as_transformers():
    model = load_model(HF_FIXTURES / "packed-bf16-gqa-untied")
    ref = reference("packed-bf16-gqa-untied")
    assert model.tokenizer.apply_chat_template(ref["chat_messages"]) == ref["chat_rendered"]


@pytest.mark.parametrize(
    ("base", "derive"),
    [
        ("online-bf16-mha-tied", derive_f32_master),
        ("packed-bf16-gqa-untied", lambda tmp: derive_unpacked_ternary("packed-bf16-gqa-untied", tmp)),
        ("sharded-bf16-gqa-silu", lambda tmp: derive_unpacked_ternary("sharded-bf16-gqa-silu", tmp, "BF16")),
    ],
)
def test_other_checkpoint_forms_of_the_same_model_meet_the_same_reference(tmp_path, base, derive):
    """transformers gives bit-identical logits for these re-saves (make_hf_fixtures.py records
    derived_forms max_abs_diff_vs_committed = 0.0); Tritium must meet the same reference."""
    peer = reference(base)["derived_forms"]
    assert all(v["max_abs_diff_vs_committed"] == 0.0 for v in peer.values())
    model = load_model(derive(tmp_path))
    compare(runtime_logits(model, reference(base)["random_ids"]), reference_logits(base), f"{base} re-saved")
