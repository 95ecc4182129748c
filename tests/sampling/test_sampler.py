"""Sampler: each stage against hand-computed expectations, determinism, and parameter validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tritium.core.errors import SamplingError
from tritium.core.sampling import Sampler, SamplingParams
from tritium.core.sampling.sampler import apply_penalties, logprobs_of, top_k_ids, top_p_ids


def _logits(n: int = 1000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 2.0, size=n).astype(np.float32)


def _draws(params: SamplingParams, logits: np.ndarray, n: int = 50) -> list[int]:
    sampler = Sampler(params)
    return [sampler.sample(logits, []) for _ in range(n)]


def test_greedy_is_first_argmax():
    x = _logits()
    assert Sampler(SamplingParams(temperature=0)).sample(x, []) == int(np.argmax(x))
    tied = np.zeros(10, np.float32)
    tied[[3, 7]] = 5.0
    assert Sampler(SamplingParams(temperature=0)).sample(tied, []) == 3


def test_accepts_a_batch_row_of_one():
    x = _logits()
    assert Sampler(SamplingParams(temperature=0)).sample(x[None, :], []) == int(np.argmax(x))


def test_same_seed_same_sequence_and_different_seeds_differ():
    x = _logits()
    a = _draws(SamplingParams(seed=123), x)
    b = _draws(SamplingParams(seed=123), x)
    c = _draws(SamplingParams(seed=124), x)
    assert a == b
    assert a != c


def test_no_seed_draws_from_os_entropy():
    x = np.zeros(5000, np.float32)  # uniform: two unseeded runs agreeing on 20 draws is ~impossible
    assert _draws(SamplingParams(), x, 20) != _draws(SamplingParams(), x, 20)


def test_top_k_one_is_greedy_even_with_ties():
    x = _logits()
    tied = x.copy()
    tied[[10, 20]] = x.max() + 1.0
    for logits in (x, tied):
        draws = _draws(SamplingParams(temperature=1.5, top_k=1, seed=1), logits)
        assert set(draws) == {int(np.argmax(logits))}


def test_tiny_top_p_is_greedy():
    x = _logits()
    draws = _draws(SamplingParams(temperature=1.0, top_p=1e-6, seed=2), x)
    assert set(draws) == {int(np.argmax(x))}


def test_top_k_keeps_only_the_k_largest():
    x = _logits()
    ids = top_k_ids(x, 5)
    assert list(ids) == list(np.argsort(-x, kind="stable")[:5])
    draws = _draws(SamplingParams(temperature=5.0, top_k=5, seed=3), x, 300)
    assert set(draws) <= set(ids.tolist())
    assert len(set(draws)) == 5


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    x = np.log(np.array([0.05, 0.4, 0.3, 0.2, 0.05], np.float32))
    assert top_p_ids(x, 0.7, None).tolist() == [1, 2]  # 0.4 + 0.3 reaches 0.7
    assert top_p_ids(x, 0.71, None).tolist() == [1, 2, 3]
    draws = _draws(SamplingParams(top_p=0.7, seed=4), x, 300)
    assert set(draws) == {1, 2}


def test_top_p_on_a_flat_vocabulary_equals_the_full_order():
    # A nucleus of thousands of tokens, with ties: only the bands that hold it are ranked.
    rng = np.random.default_rng(8)
    x = np.round(rng.standard_normal(32000) * 0.5, 2).astype(np.float32)
    z = np.exp(x.astype(np.float64) - x.max())
    z /= z.sum()
    order = np.lexsort((np.arange(x.size), -x))  # by logit descending, ties by id
    n_keep = int(np.searchsorted(np.cumsum(z[order]), 0.95, side="left")) + 1
    kept = top_p_ids(x, 0.95, None)
    assert n_keep > 5000 and kept.tolist() == order[:n_keep].tolist()


def test_top_p_widens_its_head_on_a_flat_distribution():
    x = np.zeros(3000, np.float32)
    x[:5] = 1.0
    kept = top_p_ids(x, 0.9, None)
    z = np.exp(x.astype(np.float64))
    z /= z.sum()
    assert z[kept].sum() >= 0.9 > z[kept[:-1]].sum()
    assert kept[:5].tolist() == [0, 1, 2, 3, 4]


def test_min_p_filters_relative_to_the_most_likely():
    probs = np.array([0.5, 0.3, 0.1, 0.06, 0.04], np.float32)
    x = np.log(probs)
    draws = _draws(SamplingParams(min_p=0.15, seed=5), x, 400)  # threshold 0.075: keeps 0, 1, 2
    assert set(draws) == {0, 1, 2}


def test_temperature_sharpens_and_flattens():
    x = np.log(np.array([0.6, 0.4], np.float32))
    cold = _draws(SamplingParams(temperature=0.1, seed=6), x, 400)
    hot = _draws(SamplingParams(temperature=10.0, seed=6), x, 400)
    assert cold.count(0) > 390
    assert 150 < hot.count(0) < 250


def test_draw_frequencies_follow_the_distribution():
    probs = np.array([0.5, 0.25, 0.125, 0.125])
    draws = _draws(SamplingParams(seed=7), np.log(probs).astype(np.float32), 4000)
    freq = np.bincount(draws, minlength=4) / 4000
    assert np.allclose(freq, probs, atol=0.03)


def test_repetition_penalty_llama_cpp_style_exact_values():
    x = np.array([2.0, -2.0, 3.0, -1.0, 4.0], np.float32)
    params = SamplingParams(repetition_penalty=2.0, penalty_last_n=3)
    # Window = last 3 of history = [1, 2, 1]: tokens 1 and 2 (each once, however often they appear).
    out = apply_penalties(x.copy(), [4, 0, 1, 2, 1], params)
    assert out.tolist() == [2.0, -4.0, 1.5, -1.0, 4.0]
    everything = SamplingParams(repetition_penalty=2.0, penalty_last_n=-1)
    whole = apply_penalties(x.copy(), [4, 0, 1, 2, 1], everything)
    assert whole.tolist() == [1.0, -4.0, 1.5, -1.0, 2.0]


def test_frequency_and_presence_penalties_count_generated_tokens_only():
    x = np.array([1.0, 1.0, 1.0, 1.0], np.float32)
    params = SamplingParams(frequency_penalty=0.5, presence_penalty=0.25)
    # Prompt [0, 0] is not counted; generated [1, 2, 2, 2].
    out = apply_penalties(x.copy(), [0, 0, 1, 2, 2, 2], params, n_prompt=2)
    assert out.tolist() == [1.0, 1.0 - 0.5 - 0.25, 1.0 - 1.5 - 0.25, 1.0]


def test_penalties_steer_greedy_choice():
    x = np.array([3.0, 2.9, 0.0], np.float32)
    sampler = Sampler(SamplingParams(temperature=0, presence_penalty=0.5))
    assert sampler.sample(x, [0], n_prompt=0) == 1
    assert sampler.sample(x, [0], n_prompt=1) == 0  # token 0 only in the prompt: no presence penalty


def test_sampler_does_not_modify_the_callers_logits():
    x = _logits()
    before = x.copy()
    Sampler(SamplingParams(temperature=0.7, repetition_penalty=1.3, frequency_penalty=1.0, top_k=10,
                           seed=0)).sample(x, [1, 2, 3])
    assert np.array_equal(x, before)


def test_logprobs_of_chosen_and_top_alternatives():
    x = np.log(np.array([0.1, 0.6, 0.3], np.float32))
    chosen = Sampler(SamplingParams(temperature=0, logprobs=2)).choose(x, [])
    assert chosen.token_id == 1
    assert chosen.logprob == pytest.approx(np.log(0.6), abs=1e-6)
    assert [t for t, _ in chosen.top_logprobs] == [1, 2]
    assert chosen.top_logprobs[1][1] == pytest.approx(np.log(0.3), abs=1e-6)
    lp, top = logprobs_of(x, 0, 0)
    assert lp == pytest.approx(np.log(0.1), abs=1e-6) and top == []
    assert Sampler(SamplingParams(temperature=0)).choose(x, []).logprob is None


@pytest.mark.parametrize(("field", "value"), [
    ("temperature", -0.1), ("temperature", float("nan")), ("temperature", "hot"),
    ("top_k", -1), ("top_k", 2.5), ("top_p", 0.0), ("top_p", 1.5), ("min_p", -0.1), ("min_p", 1.1),
    ("repetition_penalty", 0.0), ("penalty_last_n", -2), ("frequency_penalty", 2.5),
    ("presence_penalty", -3.0), ("seed", -1), ("max_tokens", 0), ("stop", "END"), ("stop", [""]),
    ("stop_token_ids", [-1]), ("logprobs", 21), ("logprobs", True),
])
def test_invalid_params_raise_sampling_error_naming_the_field(field, value):
    with pytest.raises(SamplingError, match=f"^{field}:"):
        SamplingParams(**{field: value}).validate()
    with pytest.raises(SamplingError, match=field):
        Sampler(SamplingParams(**{field: value}))


def test_valid_edge_params_pass():
    SamplingParams(temperature=0, top_p=1.0, min_p=1.0, max_tokens=None, seed=np.int64(3),
                   frequency_penalty=-2.0, stop=["a"], stop_token_ids=[0], logprobs=0).validate()


def _naive_order(x):
    return sorted(range(len(x)), key=lambda i: (-float(x[i]), i))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-4, 4), min_size=1, max_size=600), st.integers(1, 700))
def test_top_k_matches_a_full_sort(values, k):
    x = np.asarray(values, np.float32)  # small integers: many ties
    k = min(k, x.size)
    assert top_k_ids(x, k).tolist() == _naive_order(x)[:k]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-8, 8, width=32), min_size=1, max_size=600), st.floats(0.01, 0.99))
def test_top_p_matches_a_full_sort(values, p):
    x = np.asarray(values, np.float32)
    order = _naive_order(x)
    probs = np.exp(x.astype(np.float64) - x.max())
    probs /= probs.sum()
    kept, mass = [], 0.0
    for i in order:
        kept.append(i)
        mass += probs[i]
        if mass >= p:
            break
    got = top_p_ids(x, p, None).tolist()
    # Cumulative sums may differ in the last ulp: allow one token of slack at the boundary only.
    assert got == kept or (abs(len(got) - len(kept)) == 1 and got[:len(kept)] == kept[:len(got)])


def test_tiny_positive_temperature_is_greedy_not_nan():
    logits = np.array([0.5, 3.0, -1.0, 2.9], dtype=np.float32)
    sampler = Sampler(SamplingParams(temperature=1e-30, seed=1).validate())
    assert [sampler.sample(logits.copy(), []) for _ in range(5)] == [1] * 5
