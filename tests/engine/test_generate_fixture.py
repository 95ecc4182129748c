"""generate() on the real bitnet.cpp fixtures: greedy output must equal bitnet.cpp's, token for token."""

from __future__ import annotations

import json

import pytest
from tritium.core.engine.generate import generate
from tritium.core.sampling import SamplingParams

from tests.conftest import BITNETCPP_FIXTURES

FIXTURE_NAMES = ["bitnet-b158-tiny", "bitnet-gqa-tiny"]


def _load(name):
    compute = pytest.importorskip("tritium.core.compute")
    if not hasattr(compute, "Runtime"):
        pytest.skip("tritium.core.compute.Runtime is not in the tree yet")
    from tritium.core.model.loader import load_model

    ref = json.loads((BITNETCPP_FIXTURES / f"{name}.ref.json").read_text())
    model = load_model(BITNETCPP_FIXTURES / f"{name}.i2_s.gguf")
    return model, compute.Runtime(model.config, model.weights), ref


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_greedy_32_tokens_match_bitnet_cpp(name):
    model, runtime, ref = _load(name)
    params = SamplingParams(temperature=0, max_tokens=32)
    chunks = list(generate(model, ref["prompt"], params, runtime=runtime))
    assert [c.token_id for c in chunks] == ref["greedy_token_ids"]
    assert "".join(c.text for c in chunks) == ref["greedy_text"]
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].stats.prompt_tokens == ref["n_prompt_tokens"]


def test_seeded_sampling_on_a_real_model_is_reproducible():
    model, runtime, ref = _load("bitnet-b158-tiny")

    def text(seed):
        params = SamplingParams(temperature=1.0, top_k=50, top_p=0.95, seed=seed, max_tokens=12)
        return "".join(c.text for c in generate(model, ref["prompt"], params, runtime=runtime))

    assert text(5) == text(5)
    assert text(5) != text(6)


def test_stop_string_on_a_real_model():
    model, runtime, ref = _load("bitnet-b158-tiny")
    params = SamplingParams(temperature=0, max_tokens=32, stop=["w121"])
    chunks = list(generate(model, ref["prompt"], params, runtime=runtime))
    assert "".join(c.text for c in chunks) == ref["greedy_text"].split("w121")[0]
    assert chunks[-1].finish_reason == "stop"
