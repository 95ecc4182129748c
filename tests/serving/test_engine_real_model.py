"""The engine over the real Runtime and the bitnet.cpp fixture model: batching, chunked prefill and
preemption must not change a single greedy token compared with one request run alone."""

from __future__ import annotations

import pytest
from tritium.core.compute import Runtime
from tritium.core.engine.generate import generate
from tritium.core.model.loader import load_model
from tritium.core.sampling import SamplingParams
from tritium.core.serving.engine_loop import ServingEngine
from tritium.core.serving.serving_config import ServingConfig

from tests.conftest import BITNETCPP_FIXTURES

N_CTX = 128
PROMPTS = ["The quick brown fox jumps over the lazy dog", "Hello", "Once upon a time, far away"]


@pytest.fixture(scope="module")
def model():
    return load_model(BITNETCPP_FIXTURES / "bitnet-b158-tiny.i2_s.gguf")


def runtime(model):
    return Runtime(model.config, model.weights, n_ctx=N_CTX, threads=1)


def params(max_tokens=10):
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)


@pytest.fixture(scope="module")
def alone(model):
    rt = runtime(model)
    return {p: [c.token_id for c in generate(model, p, params(), runtime=rt)] for p in PROMPTS}


def run(engine, handles):
    while engine.step():
        pass
    return [[e.token_id for e in h] for h in handles]


def test_batched_and_chunked_requests_match_lone_requests(model, alone):
    engine = ServingEngine(model, [runtime(model)], ServingConfig(prefill_chunk=4, max_batch_tokens=9))
    handles = [engine.submit(model.tokenizer.encode(p), params()) for p in PROMPTS]
    assert run(engine, handles) == [alone[p] for p in PROMPTS]
    assert engine.counters.steps < 3 * 10  # they shared steps


def test_preempted_request_resumes_with_the_lone_greedy_tokens(model, alone):
    engine = ServingEngine(model, [runtime(model)], ServingConfig(max_batch_size=1, preempt_enabled=True))
    low = engine.submit(model.tokenizer.encode(PROMPTS[0]), params(), priority=0)
    for _ in range(4):
        engine.step()
    high = engine.submit(model.tokenizer.encode(PROMPTS[2]), params(), priority=1)
    low_tokens, high_tokens = run(engine, [low, high])
    assert engine.counters.preemptions == 1
    assert low_tokens == alone[PROMPTS[0]]
    assert high_tokens == alone[PROMPTS[2]]
