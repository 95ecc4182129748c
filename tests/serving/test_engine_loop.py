"""The continuous-batching engine driven step by step over a fake batch runtime."""

from __future__ import annotations

import asyncio

import pytest
from tritium.core.engine.generate import generate
from tritium.core.errors import ContextOverflowError, SamplingError, TokenizerError
from tritium.core.sampling import SamplingParams
from tritium.core.serving.engine_loop import ServingEngine
from tritium.core.serving.errors import QueueFullError
from tritium.core.serving.serving_config import ServingConfig

from tests.serving.fakes import EOS, FakeBatchRuntime, fake_model


def greedy(max_tokens=8, **kw):
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, **kw)


def prompt(text):
    return fake_model().tokenizer.encode(text)


def make_engine(runtime=None, **cfg):
    runtime = runtime or FakeBatchRuntime()
    return ServingEngine(fake_model(), [runtime], ServingConfig(**cfg)), runtime


def drain(handle):
    """Every event already delivered to a handle (the engine is driven by hand: nothing blocks)."""
    events = []
    while not handle._events.empty():
        events.append(handle._events.get())
    return events


def run_until_idle(engine, limit=500):
    for _ in range(limit):
        if not engine.step():
            return
    raise AssertionError("engine did not go idle")


def uninterrupted_tokens(text, params):
    """The reference: single-request generate() over the same fake runtime."""
    return [c.token_id for c in generate(fake_model(), text, params, runtime=FakeBatchRuntime())]


def test_one_runtime_call_per_step_and_requests_join_at_token_boundaries():
    engine, rt = make_engine()
    a = engine.submit(prompt("first"), greedy(6))
    engine.step()  # a prefills alone
    engine.step()  # a decodes
    b = engine.submit(prompt("second one"), greedy(3))
    engine.step()  # b joins: its prefill in the same runtime call as a's decode
    assert len(rt.calls) == 3 == engine.counters.steps == engine.counters.runtime_calls
    assert [len(toks) for _, toks in rt.calls[2]] == [1, len(prompt("second one"))]
    assert list(engine.counters.step_sizes) == [1, 1, 2]
    run_until_idle(engine)
    assert len(rt.calls) == engine.counters.runtime_calls  # never more than one call per step
    ea, eb = drain(a), drain(b)
    assert [e.finish_reason for e in ea][-1] == "length" and len(ea) == 6
    assert [e.finish_reason for e in eb][-1] == "length" and len(eb) == 3
    # b left after 3 tokens: later steps carry only a.
    assert all(len(call) == 1 for call in rt.calls[5:])


def test_batched_tokens_equal_single_request_generate():
    engine, _ = make_engine()
    texts = ["alpha", "a longer prompt here", "z"]
    handles = [engine.submit(prompt(t), greedy(7)) for t in texts]
    run_until_idle(engine)
    for t, h in zip(texts, handles, strict=True):
        events = drain(h)
        assert [e.token_id for e in events] == uninterrupted_tokens(t, greedy(7))
        assert "".join(e.text for e in events) == "".join(chr(e.token_id) for e in events)
        assert events[-1].prompt_tokens == len(prompt(t)) and events[-1].completion_tokens == 7


def test_prefill_is_chunked_and_decodes_keep_running():
    engine, rt = make_engine(prefill_chunk=4, max_batch_tokens=6)
    a = engine.submit(prompt("ab"), greedy(10))
    engine.step()
    long_ids = prompt("0123456789abc")  # 14 tokens with BOS
    b = engine.submit(long_ids, greedy(2))
    for _ in range(4):
        engine.step()
    a_uid = rt.calls[0][0][0]
    chunks = [toks for call in rt.calls[1:5] for uid, toks in call if uid != a_uid]
    assert [len(c) for c in chunks] == [4, 4, 4, 2]
    assert sum(chunks, []) == long_ids
    # a decoded one token in each of those steps, never stalled by b's prompt.
    assert all(any(uid == a_uid and len(toks) == 1 for uid, toks in call) for call in rt.calls[1:5])
    assert all(sum(len(t) for _, t in call) <= 6 for call in rt.calls)
    run_until_idle(engine)
    assert [e.token_id for e in drain(b)] == uninterrupted_tokens("0123456789abc", greedy(2))
    assert len(drain(a)) == 10


def test_cancel_frees_the_kv_cache_at_the_next_step():
    engine, rt = make_engine()
    a = engine.submit(prompt("keep"), greedy(20))
    b = engine.submit(prompt("cancel me"), greedy(20))
    engine.step()
    engine.step()
    b_uid = rt.calls[0][1][0]
    b.cancel()
    assert rt.freed == []  # nothing happens between steps
    engine.step()
    assert rt.freed == [b_uid]
    assert [uid for uid, _ in rt.calls[-1]] == [rt.calls[0][0][0]]
    events = drain(b)
    assert events[-1].finish_reason == "cancelled" and events[-1].token_id is None
    assert engine.load()["running"] == 1
    a.cancel()
    engine.step()
    assert sorted(rt.freed) == sorted([b_uid, rt.calls[0][0][0]])
    assert engine.load() == {**engine.load(), "running": 0, "waiting": 0}


def test_finished_requests_free_their_kv_cache():
    engine, rt = make_engine()
    handles = [engine.submit(prompt(t), greedy(2)) for t in ("x", "y", "z")]
    run_until_idle(engine)
    assert len(rt.freed) == 3
    assert all(drain(h)[-1].finish_reason == "length" for h in handles)


def test_full_queue_refuses_with_retry_after_then_accepts_again():
    engine, _ = make_engine(max_queue=2, max_batch_size=1, retry_after_s=3)
    engine.submit(prompt("a"), greedy(2))
    engine.submit(prompt("b"), greedy(2))
    with pytest.raises(QueueFullError) as err:
        engine.submit(prompt("c"), greedy(2))
    assert err.value.retry_after == 3
    with pytest.raises(QueueFullError):  # all or none: two choices do not fit one free slot either
        engine.step()
        engine.submit_many([(prompt("c"), greedy(2)), (prompt("d"), greedy(2))])
    run_until_idle(engine)
    engine.submit(prompt("c"), greedy(2))


def test_invalid_requests_are_refused_before_queuing():
    engine, _ = make_engine()
    with pytest.raises(SamplingError, match="top_p"):
        engine.submit(prompt("a"), SamplingParams(top_p=0.0))
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        engine.submit([1, 99999], greedy())
    with pytest.raises(ContextOverflowError):
        engine.submit(prompt("a" * 60), greedy(10))  # n_ctx 64
    assert engine.load()["waiting"] == 0


def test_eos_and_stop_strings_end_the_request():
    def rule(prefix):  # spells "abcSTOPxyz" after the prompt, then EOS
        script = [ord(c) for c in "abcSTOPxyz"] + [EOS]
        return script[min(len(prefix) - 4, len(script) - 1)]

    engine, _ = make_engine(FakeBatchRuntime(rule=rule))
    stopped = engine.submit(prompt("abc"), greedy(20, stop=["STOP"]))
    to_eos = engine.submit(prompt("abc"), greedy(20))
    run_until_idle(engine)
    ev = drain(stopped)
    assert "".join(e.text for e in ev) == "abc" and ev[-1].finish_reason == "stop"
    ev = drain(to_eos)
    assert "".join(e.text for e in ev) == "abcSTOPxyz" and ev[-1].finish_reason == "stop"
    assert ev[-1].token_id == EOS


def test_preempted_request_resumes_with_exactly_the_uninterrupted_greedy_tokens():
    # exact_recompute off: the history is re-fed in prefill chunks (tests/serving/
    # test_plugin_integration.py checks the default, which replays the original chunk boundaries).
    engine, rt = make_engine(max_batch_size=1, preempt_enabled=True, exact_recompute=False)
    low = engine.submit(prompt("low priority"), greedy(12), priority=0)
    for _ in range(5):
        engine.step()
    low_uid = rt.calls[0][0][0]
    high = engine.submit(prompt("urgent"), greedy(4), priority=5)
    engine.step()
    assert engine.counters.preemptions == 1 and rt.freed == [low_uid]
    run_until_idle(engine)
    high_events, low_events = drain(high), drain(low)
    assert high_events[-1].finish_reason == "length"
    assert [e.token_id for e in low_events] == uninterrupted_tokens("low priority", greedy(12))
    assert "".join(e.text for e in low_events) == "".join(chr(e.token_id) for e in low_events)
    # On resume the low request re-fed its whole history in one chunk: the prompt plus the 5 tokens
    # sampled in its 5 steps (prefill + 4 decodes).
    resume = next(toks for call in rt.calls[6:] for uid, toks in call if uid not in (low_uid,)
                  and toks[:len(prompt("low priority"))] == prompt("low priority"))
    assert len(resume) == len(prompt("low priority")) + 5


def test_preemption_with_seeded_sampling_is_also_exact():
    params = SamplingParams(temperature=1.5, top_k=50, seed=7, max_tokens=10)
    reference = uninterrupted_tokens("seeded", params)
    engine, _ = make_engine(max_batch_size=1, preempt_enabled=True)
    low = engine.submit(prompt("seeded"), SamplingParams(**{**params.__dict__}))
    for _ in range(4):
        engine.step()
    engine.submit(prompt("vip"), greedy(3), priority=1)
    run_until_idle(engine)
    assert engine.counters.preemptions == 1
    assert [e.token_id for e in drain(low)] == reference


def test_without_preemption_a_high_priority_arrival_waits_but_goes_first_in_the_queue():
    engine, rt = make_engine(max_batch_size=1)
    running = engine.submit(prompt("r"), greedy(3))
    engine.step()
    later_low = engine.submit(prompt("low"), greedy(1), priority=0)
    later_high = engine.submit(prompt("high"), greedy(1), priority=9)
    run_until_idle(engine)
    assert engine.counters.preemptions == 0
    assert drain(running)[-1].finish_reason == "length"
    order = [call[0][1] for call in rt.calls if len(call[0][1]) > 1]  # prefills in order
    assert order == [prompt("r"), prompt("high"), prompt("low")]
    assert drain(later_low) and drain(later_high)


def test_runtime_failure_ends_the_batch_with_an_error_and_the_engine_keeps_serving():
    engine, rt = make_engine()
    a = engine.submit(prompt("a"), greedy(3))
    rt.fail_next = True
    engine.step()
    ev = drain(a)
    assert ev[-1].finish_reason == "error" and "scripted backend failure" in ev[-1].error
    b = engine.submit(prompt("b"), greedy(3))
    run_until_idle(engine)
    assert drain(b)[-1].finish_reason == "length"


def test_logprobs_come_from_the_sampler():
    engine, _ = make_engine()
    h = engine.submit(prompt("lp"), greedy(3, logprobs=2))
    run_until_idle(engine)
    for e in drain(h):
        assert e.logprob is not None and e.logprob <= 0.0
        assert len(e.top_logprobs) == 2 and e.top_logprobs[0][0] == e.token_id


def test_engine_thread_serves_sync_and_asyncio_consumers():
    engine, _ = make_engine()
    engine.start()
    try:
        sync_tokens = [e.token_id for e in engine.submit(prompt("sync"), greedy(5))]
        assert sync_tokens == uninterrupted_tokens("sync", greedy(5))

        async def consume(text):
            return [e.token_id async for e in engine.submit(prompt(text), greedy(5))]

        async def both():
            return await asyncio.gather(consume("one"), consume("two"))

        one, two = asyncio.run(both())
        assert one == uninterrupted_tokens("one", greedy(5))
        assert two == uninterrupted_tokens("two", greedy(5))
    finally:
        engine.stop()


def test_stop_ends_live_requests():
    engine, _ = make_engine()
    h = engine.submit(prompt("never run"), greedy(5))
    engine.stop()
    assert [e.finish_reason for e in h] == ["cancelled"]
