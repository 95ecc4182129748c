"""generate() with a scripted runtime and a byte-level tokenizer: stopping, limits, UTF-8, context."""

from __future__ import annotations

import pytest
from tritium.core.engine.generate import generate
from tritium.core.errors import ContextOverflowError, SamplingError, TokenizerError
from tritium.core.sampling import SamplingParams

from tests.engine.fakes import BOS, EOS, ScriptedRuntime, fake_model, word


def _run(script, prompt="hi", n_ctx=64, **kw):
    runtime = ScriptedRuntime(script, n_ctx=n_ctx)
    params = SamplingParams(temperature=0, **{"max_tokens": 20, **kw})
    chunks = list(generate(fake_model(), prompt, params, runtime=runtime))
    return chunks, runtime


def test_prefill_then_one_token_per_step():
    chunks, rt = _run([word("hello"), word(" world"), EOS])
    assert rt.fed[0] == [BOS, ord("h"), ord("i")]  # BOS added as the tokenizer's metadata says
    assert rt.fed[1:] == [[word("hello")], [word(" world")]]  # the EOS is never evaluated
    assert [c.text for c in chunks] == ["hello", " world", ""]
    assert [c.finish_reason for c in chunks] == [None, None, "stop"]
    assert chunks[-1].token_id == EOS


def test_token_ids_prompt_is_used_as_is():
    _, rt = _run([EOS], prompt=[BOS, 5, 6])
    assert rt.fed[0] == [BOS, 5, 6]


def test_stop_string_spanning_chunks_is_cut_and_not_emitted():
    script = [word("hello"), ord(" "), word("STO"), word("P"), word("!"), EOS]
    chunks, rt = _run(script, stop=["STOP"])
    text = "".join(c.text for c in chunks)
    assert text == "hello "
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].token_id == word("P")
    assert len(chunks) == 4 and len(rt.fed) == 4  # nothing generated after the stop string


def test_held_back_text_comes_out_when_it_is_not_a_stop():
    chunks, _ = _run([word("STO"), word("!"), EOS], stop=["STOP"])
    assert [c.text for c in chunks] == ["", "STO!", ""]


def test_held_back_text_is_flushed_at_length():
    chunks, _ = _run([word("hello"), word("STO")], stop=["STOP"], max_tokens=2)
    assert "".join(c.text for c in chunks) == "helloSTO"
    assert chunks[-1].finish_reason == "length"


def test_stop_token_ids_end_generation_without_text():
    chunks, _ = _run([word("hello"), ord("x"), word("!")], stop_token_ids=[ord("x")])
    assert [c.text for c in chunks] == ["hello", ""]
    assert chunks[-1].finish_reason == "stop"


def test_ignore_eos_keeps_going_until_max_tokens():
    chunks, _ = _run([EOS], ignore_eos=True, max_tokens=3)
    assert [c.token_id for c in chunks] == [EOS, EOS, EOS]
    assert chunks[-1].finish_reason == "length"


def test_max_tokens_finishes_with_length_and_stats():
    chunks, rt = _run([word("hello")] * 10, max_tokens=4)
    assert len(chunks) == 4 and len(rt.fed) == 4  # prefill + 3 steps: the last token is not evaluated
    assert [c.finish_reason for c in chunks] == [None, None, None, "length"]
    stats = chunks[-1].stats
    assert stats.prompt_tokens == 3 and stats.completion_tokens == 4
    assert stats.prefill_seconds > 0 and stats.decode_tokens_per_second > 0
    assert all(c.stats is None for c in chunks[:-1])


def test_utf8_character_split_across_byte_tokens_is_never_emitted_half():
    euro = "€".encode()  # 3 bytes, one byte token each
    chunks, _ = _run([euro[0], euro[1], euro[2], word(" é"), EOS])
    assert [c.text for c in chunks] == ["", "", "€", " é", ""]


def test_unfinished_utf8_at_the_end_becomes_a_replacement_character():
    chunks, _ = _run([0xE2, 0x82], max_tokens=2)
    assert "".join(c.text for c in chunks) == "\ufffd"


def test_max_tokens_none_runs_until_the_context_is_full():
    chunks, rt = _run([word("!")], n_ctx=8, max_tokens=None)
    assert len(chunks) == 8 - 3 and chunks[-1].finish_reason == "length"
    assert sum(len(f) for f in rt.fed) <= 8


def test_logprobs_are_reported_per_chunk():
    chunks, _ = _run([word("hello"), EOS], logprobs=2)
    assert chunks[0].logprob is not None and chunks[0].logprob < 0
    assert chunks[0].top_logprobs[0][0] == word("hello")


def test_prompt_longer_than_the_context_is_refused_before_any_work():
    runtime = ScriptedRuntime([EOS], n_ctx=8)
    with pytest.raises(ContextOverflowError, match="8 tokens"):
        generate(fake_model(), "a" * 10, SamplingParams(max_tokens=None), runtime=runtime)
    with pytest.raises(ContextOverflowError, match="4 in the prompt, 5 to generate"):
        generate(fake_model(), "abc", SamplingParams(max_tokens=5), runtime=runtime)
    assert runtime.fed == []


def test_invalid_params_and_prompts_are_refused_at_the_call():
    runtime = ScriptedRuntime([EOS])
    with pytest.raises(SamplingError, match="top_p"):
        generate(fake_model(), "hi", SamplingParams(top_p=0), runtime=runtime)
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        generate(fake_model(), [BOS, 99999], SamplingParams(), runtime=runtime)
    with pytest.raises(TokenizerError, match="no tokens"):
        generate(fake_model(), [], SamplingParams(), runtime=runtime)


def test_seeded_sampling_is_reproducible_through_generate():
    import numpy as np

    class NoisyRuntime(ScriptedRuntime):
        def eval(self, seq, tokens, all_logits=False):
            super().eval(seq, tokens)
            logits = np.full((1, self.n_vocab), -1e9, np.float32)
            logits[0, word("hello"):] = 0.0  # uniform over the whole-word pieces
            return logits

    def run(seed):
        params = SamplingParams(temperature=1.0, seed=seed, max_tokens=10, ignore_eos=True)
        return [c.token_id for c in generate(fake_model(), "x", params, runtime=NoisyRuntime([0]))]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_prompt_cache_evaluates_only_the_new_suffix():
    from tritium.core.engine.prompt_cache import PromptCache

    runtime = ScriptedRuntime([word("hello"), word(" world"), EOS], n_ctx=64)
    cache = PromptCache()
    params = SamplingParams(temperature=0, max_tokens=2)
    first = list(generate(fake_model(), [BOS, 5, 6], params, runtime=runtime, cache=cache))
    # Prompt evaluated, then "hello"; " world" was the last token and was never evaluated.
    assert cache.tokens == [BOS, 5, 6, word("hello")] and cache.seq.n_past == 4
    assert first[-1].stats.cached_prompt_tokens == 0
    runtime.fed.clear()
    longer = [BOS, 5, 6, word("hello"), 7, 8]
    second = list(generate(fake_model(), longer, params, runtime=runtime, cache=cache))
    assert runtime.fed[0] == [7, 8]
    assert second[-1].stats.cached_prompt_tokens == 4
    runtime.fed.clear()
    list(generate(fake_model(), [BOS, 5, 9], params, runtime=runtime, cache=cache))  # diverges at index 2
    assert runtime.fed[0] == [9]
    runtime.fed.clear()
    list(generate(fake_model(), [BOS, 5], params, runtime=runtime, cache=cache))  # a prefix of the cache
    assert runtime.fed[0] == [5]  # the last prompt token is re-evaluated for its logits
    assert cache.seq.n_past == len(cache.tokens)


def test_prompt_cache_stays_consistent_when_a_stream_is_abandoned():
    from tritium.core.engine.prompt_cache import PromptCache

    runtime = ScriptedRuntime([word("hello")] * 10, n_ctx=64)
    cache = PromptCache()
    stream = generate(fake_model(), [BOS, 5], SamplingParams(temperature=0, max_tokens=8), runtime=runtime,
                      cache=cache)
    next(stream)
    next(stream)
    stream.close()
    assert cache.tokens == [BOS, 5, word("hello")] and cache.seq.n_past == 3
