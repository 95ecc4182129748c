"""The engine's continuations (config decode_steps): several decode steps per backend call, the
backend choosing the tokens as the request's own sampler would (argmax, or sampled with its
generator, penalties and logprobs), with exactly the events of one call per token."""

from __future__ import annotations

from tritium.core.sampling import SamplingParams
from tritium.core.serving.engine_loop import ServingEngine
from tritium.core.serving.serving_config import ServingConfig

from tests.serving.fakes import EOS, FakeBatchRuntime, GreedyStepsRuntime, fake_model
from tests.serving.test_engine_loop import drain, greedy, prompt, run_until_idle

TEXTS = ["alpha", "a longer prompt here", "z"]


def _events(runtime, requests, **cfg):
    engine = ServingEngine(fake_model(), [runtime], ServingConfig(**cfg))
    handles = [engine.submit(prompt(text), params) for text, params in requests]
    run_until_idle(engine)
    return [drain(h) for h in handles], engine


def _same(a, b):
    assert [[(e.token_id, e.text, e.finish_reason) for e in ev] for ev in a] == [
        [(e.token_id, e.text, e.finish_reason) for e in ev] for ev in b
    ]


def test_greedy_steps_give_the_events_of_one_call_per_token():
    requests = [(t, greedy(9)) for t in TEXTS]
    want, one_per_token = _events(FakeBatchRuntime(), requests, decode_steps=1)
    rt = GreedyStepsRuntime()
    got, engine = _events(rt, requests, decode_steps=4)
    _same(got, want)
    assert all(len(ev) == 9 and ev[-1].finish_reason == "length" for ev in got)
    # The prefill call stays one step (the first token comes as soon as without continuations); then
    # two calls of 1 + 3 decode steps give tokens 2-5 and 6-9.
    assert rt.greedy_calls == [[3, 3, 3], [3, 3, 3]]
    assert engine.counters.runtime_calls < one_per_token.counters.runtime_calls
    assert engine.counters.tokens_generated == 27
    assert sorted(rt.freed) == [1, 2, 3]  # every KV cache released


def test_eos_and_stop_strings_inside_a_continuation_end_the_request_as_one_call_per_token():
    def rule(prefix):  # spells "abcSTOPxyz" after the prompt, then EOS
        script = [ord(c) for c in "abcSTOPxyz"] + [EOS]
        return script[min(len(prefix) - 4, len(script) - 1)]

    requests = [("abc", greedy(20, stop=["STOP"])), ("abc", greedy(20))]
    want, _ = _events(FakeBatchRuntime(rule=rule), requests, decode_steps=1)
    rt = GreedyStepsRuntime(rule=rule)
    got, _ = _events(rt, requests, decode_steps=4)
    _same(got, want)
    assert "".join(e.text for e in got[1]) == "abcSTOPxyz" and got[1][-1].token_id == EOS
    assert any(any(steps) for steps in rt.greedy_calls)
    # EOS ends a continuation unfed: the backend never stepped past it.
    assert all(EOS not in tokens for call in rt.calls for _, tokens in call)


def test_no_continuation_while_a_request_waits():
    rt = GreedyStepsRuntime()
    engine = ServingEngine(fake_model(), [rt], ServingConfig(max_batch_size=1, decode_steps=4))
    first = engine.submit(prompt("first"), greedy(6))
    second = engine.submit(prompt("second"), greedy(6))
    while not rt.freed:  # until `first` ends and frees its KV cache
        engine.step()
        assert not rt.greedy_calls  # `second` waits for the batch slot: each call is one step
    run_until_idle(engine)
    assert any(any(steps) for steps in rt.greedy_calls)  # alone, `second` continues greedily
    want, _ = _events(FakeBatchRuntime(), [("first", greedy(6)), ("second", greedy(6))], decode_steps=1)
    _same([drain(first), drain(second)], want)


def test_seeded_sampled_requests_continue_with_the_tokens_of_one_call_per_token():
    requests = [
        ("alpha", SamplingParams(temperature=0.8, seed=3, max_tokens=12)),
        ("a longer prompt here", SamplingParams(temperature=1.3, top_k=20, top_p=0.9, min_p=0.02, seed=11,
                                                max_tokens=12)),
        ("z", greedy(12)),  # greedy and sampled requests continue in the same calls
    ]
    want, _ = _events(FakeBatchRuntime(), requests, decode_steps=1)
    rt = GreedyStepsRuntime()
    got, engine = _events(rt, requests, decode_steps=4)
    _same(got, want)
    assert rt.greedy_calls and all(n == 2 for n in rt.sampled_calls)
    assert engine.counters.continued_tokens > 0
    assert len({tuple(e.token_id for e in ev) for ev in got[:2]}) == 2  # the draws do differ


def test_requests_with_penalties_and_logprobs_continue_with_the_events_of_one_call_per_token():
    requests = [
        ("alpha", SamplingParams(temperature=0.8, seed=3, max_tokens=10, presence_penalty=0.5,
                                 frequency_penalty=0.3)),
        ("a longer prompt here", greedy(10, repetition_penalty=1.3, penalty_last_n=6)),
        ("z", greedy(10, logprobs=2)),
    ]
    want, _ = _events(FakeBatchRuntime(), requests, decode_steps=1)
    rt = GreedyStepsRuntime()
    got, engine = _events(rt, requests, decode_steps=4)
    _same(got, want)
    assert [[(e.logprob, e.top_logprobs) for e in ev] for ev in got] == [
        [(e.logprob, e.top_logprobs) for e in ev] for ev in want
    ]
    assert got[2][0].logprob is not None and len(got[2][-1].top_logprobs) == 2
    assert rt.greedy_calls and all(n == 3 for n in rt.sampled_calls)
    assert engine.counters.continued_tokens > 0


def test_decode_steps_1_turns_continuations_off():
    rt = GreedyStepsRuntime()
    _events(rt, [("alpha", greedy(8))], decode_steps=1)
    assert rt.greedy_calls == []
