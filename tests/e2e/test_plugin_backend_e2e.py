"""End to end: greedy generation through the builtin cpu backend plugin process, against the same
kernels in-process, and surviving a SIGKILL of the plugin in the middle of the generation."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import grpc
import numpy as np
import pytest
from tritium.core.sampling import SamplingParams
from tritium.core.sampling.sampler import Sampler
from tritium.plugin_host.client import BackendClient
from tritium.plugin_host.discovery import BUILTIN_DIR, discover
from tritium.plugin_host.supervisor import PluginState, RestartPolicy, Supervisor
from tritium.protos.tritium.plugin.v1 import backend_pb2, backend_pb2_grpc

from tests.process_control import freeze

compute = pytest.importorskip("tritium.core.compute", reason="the engine's Runtime is not available")
loader = pytest.importorskip("tritium.core.model.loader", reason="the engine's loader is not available")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bitnetcpp"
MODEL = FIXTURES / "bitnet-b158-tiny.i2_s.gguf"
REF = json.loads((FIXTURES / "bitnet-b158-tiny.ref.json").read_text())
# BOS + the prompt (n_prompt_tokens counts the BOS), then bitnet.cpp's greedy continuation.
PROMPT = [
    int(t) for t in np.load(FIXTURES / "bitnet-b158-tiny.prompt_greedy.tokens.npy")[: REF["n_prompt_tokens"]]
]
N_NEW = 32
THREADS = 1


@pytest.fixture(scope="module")
def sup():
    # The module kills this plugin several times on purpose: more than the default breaker allows.
    s = Supervisor(policy=RestartPolicy(backoff_initial_s=0.01, ready_wait_s=120, max_crashes=20))
    s.register_discovered(discover({"builtin": [BUILTIN_DIR]}, entry_points=False, env={}))
    s.start("cpu")
    yield s
    s.close()


@pytest.fixture(scope="module")
def client(sup):
    c = BackendClient(sup, "cpu", step_timeout_s=300, load_timeout_s=300)
    # Few logit rows on purpose: a prompt with all_logits must make the plugin grow its segment.
    c.load_model(str(MODEL), threads=THREADS, max_sequences=4)
    yield c
    c.close()


@pytest.fixture(scope="module")
def runtime():
    m = loader.load_model(MODEL)
    return compute.Runtime(m.config, m.weights, threads=THREADS)


def _greedy(eval_fn, new_seq, n, on_step=None):
    seq = new_seq()
    logits = eval_fn(seq, PROMPT)
    out = []
    for i in range(n):
        t = int(np.asarray(logits)[-1].argmax())
        out.append(t)
        if on_step is not None:
            on_step(i)
        logits = eval_fn(seq, [t])
    return out


@pytest.fixture(scope="module")
def in_process_tokens(runtime):
    return _greedy(runtime.eval, runtime.new_sequence, N_NEW)


def test_model_info_and_prompt_logits_match_in_process(client, runtime):
    assert client.model.n_vocab == runtime.config.n_vocab and client.model.n_layer == runtime.config.n_layer
    assert client.model.format == "gguf" and client.interpretation
    seq = client.new_sequence()
    got = client.eval(seq, PROMPT, all_logits=True)
    want = runtime.eval(runtime.new_sequence(), PROMPT, all_logits=True)
    assert got.shape == (len(PROMPT), runtime.config.n_vocab)
    np.testing.assert_array_equal(got, want)
    client.release(seq)


def test_greedy_through_the_plugin_equals_in_process(client, in_process_tokens):
    assert _greedy(client.eval, client.new_sequence, N_NEW) == in_process_tokens


def test_greedy_matches_bitnet_cpp(in_process_tokens):
    # The plugin reproduces the engine; the engine reproduces bitnet.cpp (its own tests say how closely).
    assert in_process_tokens == REF["greedy_token_ids"][:N_NEW]


def test_sigkill_mid_generation_gives_exactly_the_undisturbed_tokens(sup, client, in_process_tokens):
    mp = sup.get("cpu")
    restarts, replayed = mp.restarts, client.replayed_steps

    def kill_at_10(i):
        if i == 10:
            os.kill(mp.instance.pid, signal.SIGKILL)

    assert _greedy(client.eval, client.new_sequence, N_NEW, on_step=kill_at_10) == in_process_tokens
    assert mp.restarts == restarts + 1 and mp.state == PluginState.READY
    assert client.replayed_steps - replayed == 11  # the prompt step and 10 decode steps, one by one
    # The dead instance's logits segment is unmapped here too (its pages would stay resident):
    # only the live plugin's segments remain mapped.
    mapped = list(client._segments._segments)
    assert mapped and all(name.startswith(f"tritium-{mp.instance.pid}-") for name in mapped), mapped


def test_fast_lane_step_equals_the_grpc_step(sup, client):
    lane = sup.instance("cpu").process.fastlane
    assert lane is not None and "Step" in lane.methods  # negotiated by default
    before = lane.calls
    by_lane = client.eval(client.new_sequence(), PROMPT, all_logits=True)
    assert lane.calls == before + 1
    client.fastlane = False
    try:
        by_grpc = client.eval(client.new_sequence(), PROMPT, all_logits=True)
    finally:
        client.fastlane = True
    assert lane.calls == before + 1
    np.testing.assert_array_equal(by_lane, by_grpc)


def test_sigkill_mid_fast_lane_step_is_retried_with_the_undisturbed_tokens(
    sup, client, in_process_tokens, monkeypatch
):
    from tritium.plugin_host.fastlane import HostLane

    mp = sup.get("cpu")
    restarts, first = mp.restarts, mp.instance
    assert first.process.fastlane is not None
    real_answer, stopped = HostLane._answer, []

    def stop_at_10(i):
        if i == 10:  # frozen, so the next Step cannot be answered before the kill below
            freeze(first.pid)
            stopped.append(first.pid)

    def kill_in_flight(self, method, response_cls, timeout):  # noqa: ANN001
        if stopped and stopped[-1] == first.pid and method == "Step":
            stopped.append(0)
            os.kill(first.pid, signal.SIGKILL)  # the request is in the slot, the doorbell rung
        return real_answer(self, method, response_cls, timeout)

    monkeypatch.setattr(HostLane, "_answer", kill_in_flight)
    assert _greedy(client.eval, client.new_sequence, N_NEW, on_step=stop_at_10) == in_process_tokens
    assert stopped == [first.pid, 0] and first.process.fastlane.closed
    assert mp.restarts == restarts + 1 and mp.state == PluginState.READY
    assert mp.instance.process.fastlane is not None and mp.instance.process.fastlane.calls > 0


def test_batched_step_equals_single_sequence_steps(client, runtime):
    prompts = [PROMPT[:9], PROMPT[:17], PROMPT]
    seqs = [client.new_sequence() for _ in prompts]
    batched = client.step(list(zip(seqs, prompts, strict=True)))
    for p, got in zip(prompts, batched, strict=True):
        np.testing.assert_allclose(got, runtime.eval(runtime.new_sequence(), p), rtol=0, atol=1e-5)
    client.release(*seqs)


def test_one_step_mixing_last_token_and_all_token_logits(sup, client, runtime):
    # A Step may ask every token's logits for some sequences and the last token's for others; the
    # plugin lays them out in one segment (last-token rows first) and each handle must point right.
    from tritium.protos.tritium.plugin.v1 import backend_pb2, backend_pb2_grpc, common_pb2
    from tritium.sdk import shm

    stub = sup.instance("cpu").stub(backend_pb2_grpc.BackendStub)
    prompts = {901: PROMPT[:7], 902: PROMPT[:5], 903: PROMPT}
    req = backend_pb2.StepRequest(step_id=77)
    for sid, toks in prompts.items():
        req.batch.add(sequence_id=sid, tokens=toks, n_past=0, all_logits=sid == 902)
    resp = stub.Step(req, timeout=120)
    segments = shm.SegmentCache()
    try:
        for out in resp.outputs:
            toks = prompts[out.sequence_id]
            got = shm.read_tensor(out.logits, segments, dtype=common_pb2.DTYPE_F32)
            want = runtime.eval(runtime.new_sequence(), toks, all_logits=out.sequence_id == 902)
            assert out.n_past == len(toks) and got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    finally:
        segments.close()
        stub.Cleanup(backend_pb2.CleanupRequest(sequence_ids=list(prompts)), timeout=30)


def test_serving_engine_runs_its_model_through_the_plugin(sup, runtime):
    # The issue-6 engine loop takes any object with new_sequence/step/free_sequence/n_ctx as a device:
    # a BackendClient makes the plugin process that device. Batching, chunked prefill and a SIGKILL of
    # the plugin in the middle must not change a greedy token.
    serving = pytest.importorskip("tritium.core.serving.engine_loop")
    from tritium.core.engine.generate import generate
    from tritium.core.sampling import SamplingParams
    from tritium.core.serving.serving_config import ServingConfig

    model = loader.load_model(MODEL)
    prompts = ["The quick brown fox jumps over the lazy dog", "Hello", "Once upon a time, far away"]
    params = SamplingParams(temperature=0.0, max_tokens=10, ignore_eos=True)
    rt = compute.Runtime(model.config, model.weights, n_ctx=128, threads=THREADS)
    alone = [[c.token_id for c in generate(model, p, params, runtime=rt)] for p in prompts]

    client = BackendClient(sup, "cpu", step_timeout_s=300, load_timeout_s=300)
    client.load_model(str(MODEL), n_ctx=128, threads=THREADS, max_sequences=8)
    engine = serving.ServingEngine(model, [client], ServingConfig(prefill_chunk=4, max_batch_tokens=9))
    handles = [engine.submit(model.tokenizer.encode(p), params) for p in prompts]
    steps = 0
    while engine.step():
        steps += 1
        if steps == 6:
            os.kill(sup.get("cpu").instance.pid, signal.SIGKILL)
    assert [[e.token_id for e in h] for h in handles] == alone
    assert client.restores == 1
    client.close()


# ---- greedy continuation (SequenceInput.greedy_steps: several decode steps per Step call) -------------
def _batched_greedy(runtime, prompts, steps, samplers=None):
    """In-process reference: every round, the argmax of each continuing sequence (or its sampler's
    draw, when samplers[i] is a core Sampler), fed as one batch."""
    seqs = [runtime.new_sequence() for _ in prompts]
    logits = [lg.copy() for lg in runtime.step(list(zip(seqs, prompts, strict=True)))]
    chosen = [[] for _ in prompts]
    samplers = samplers or [None] * len(prompts)
    active = [i for i, n in enumerate(steps) if n]
    while active:
        for i in active:
            row, sampler = logits[i][-1], samplers[i]
            chosen[i].append(int(row.argmax()) if sampler is None else sampler.sample(row, []))
        rows = runtime.step([(seqs[i], [chosen[i][-1]]) for i in active])
        for i, lg in zip(active, rows, strict=True):
            logits[i] = lg.copy()
        active = [i for i in active if len(chosen[i]) < steps[i]]
    return chosen, logits


def test_greedy_steps_equal_the_same_batched_steps_in_process(client, runtime):
    prompts = [PROMPT, PROMPT[:5], [PROMPT[0], 42]]
    steps = [9, 4, 0]  # sequences leave the continuation at different rounds; one does not continue
    want_tokens, want_logits = _batched_greedy(runtime, prompts, steps)
    seqs = [client.new_sequence() for _ in prompts]
    got = client.step_continue(list(zip(seqs, prompts, strict=True)), steps, ())
    for (tokens, logits), want_t, want_lg, seq, prompt in zip(
        got, want_tokens, want_logits, seqs, prompts, strict=True
    ):
        assert tokens == want_t
        np.testing.assert_array_equal(logits.reshape(-1), want_lg.reshape(-1))
        assert client.n_past(seq) == len(prompt) + len(tokens)
    client.release(*seqs)


SAMPLED = [
    SamplingParams(temperature=0.9, top_p=0.95, seed=5),
    SamplingParams(temperature=1.4, top_k=40, min_p=0.01, seed=6),
]


def test_sampled_steps_draw_what_the_host_sampler_draws_step_by_step(client, runtime, in_process_tokens):
    prompts = [PROMPT, PROMPT[:5], [PROMPT[0], 42]]
    steps = [9, 6, 4]  # two sampled continuations and a greedy one in the same calls
    reference = [Sampler(p) for p in SAMPLED] + [None]
    want_tokens, want_logits = _batched_greedy(runtime, prompts, steps, reference)
    hosts = [Sampler(p) for p in SAMPLED]  # the host's samplers: the same seeds as the reference
    seqs = [client.new_sequence() for _ in prompts]
    conts = [h.continuation(p, len(p)) for h, p in zip(hosts, prompts, strict=False)] + [None]
    got = client.step_continue(list(zip(seqs, prompts, strict=True)), steps, (), conts)
    for (tokens, logits), want_t, want_lg in zip(got, want_tokens, want_logits, strict=True):
        assert tokens == want_t
        np.testing.assert_array_equal(logits.reshape(-1), want_lg.reshape(-1))
    assert want_tokens[0] != in_process_tokens[:9]  # not the greedy tokens
    # The host's generators continue after the plugin's last draws: the next draws match too.
    reference = [Sampler(p) for p in SAMPLED]
    for sampler, n in zip(reference, steps, strict=False):
        for _ in range(n):
            sampler.rng.random()
    assert [h.rng.random() for h in hosts] == [s.rng.random() for s in reference]
    client.release(*seqs)


def test_continuations_with_penalties_and_logprobs_choose_as_the_host_sampler(client, runtime):
    params = SamplingParams(temperature=0.9, top_p=0.95, seed=12, repetition_penalty=1.3, penalty_last_n=8,
                            frequency_penalty=0.4, presence_penalty=0.2, logprobs=3)
    for p in (params, SamplingParams(temperature=0.0, repetition_penalty=1.5, penalty_last_n=-1, logprobs=1)):
        reference, seq = Sampler(p), runtime.new_sequence()  # in-process, one step per token
        history = list(PROMPT)
        logits, want = runtime.step([(seq, PROMPT)])[0], []
        for _ in range(7):
            want.append(reference.choose(logits[-1], history, n_prompt=len(PROMPT)))
            history.append(want[-1].token_id)
            logits = runtime.step([(seq, [history[-1]])])[0]
        host, remote = Sampler(p), client.new_sequence()
        first = host.choose(client.step([(remote, PROMPT)])[0][-1], PROMPT, n_prompt=len(PROMPT))
        cont = host.continuation(PROMPT + [first.token_id], len(PROMPT))
        [(tokens, _)] = client.step_continue([(remote, [first.token_id])], [6], (), [cont])
        assert [first.token_id] + tokens == [c.token_id for c in want]
        assert [first] + cont.logprobs == want  # log-probabilities and top alternatives too
        client.release(remote)


def test_sigkill_mid_sampled_steps_draws_the_same_tokens_on_the_restarted_plugin(sup, client, monkeypatch):
    from tritium.plugin_host.fastlane import HostLane

    def run(kill):
        seq, host = client.new_sequence(), Sampler(SAMPLED[0])  # as the engine: one sampler per request
        cont = host.continuation(PROMPT, len(PROMPT))
        tokens, logits = client.step_continue([(seq, PROMPT)], [5], (), [cont])[0]
        tokens.append(host.sample(logits[-1], []))  # penalty-free: no history needed
        if kill:
            real_answer, killed = HostLane._answer, []

            def kill_in_flight(self, method, response_cls, timeout):  # noqa: ANN001
                if not killed:
                    killed.append(sup.get("cpu").instance.pid)
                    os.kill(killed[0], signal.SIGKILL)
                return real_answer(self, method, response_cls, timeout)

            monkeypatch.setattr(HostLane, "_answer", kill_in_flight)
        cont = host.continuation(PROMPT + tokens, len(PROMPT))
        more, _ = client.step_continue([(seq, [tokens[-1]])], [5], (), [cont])[0]
        monkeypatch.undo()
        client.release(seq)
        return tokens + more, host.rng.random()

    restarts = sup.get("cpu").restarts
    undisturbed = run(kill=False)
    assert run(kill=True) == undisturbed
    assert sup.get("cpu").restarts == restarts + 1


def test_sampled_steps_refuse_bad_sampling_and_a_missing_generator_state(sup):
    stub = sup.instance("cpu").stub(backend_pb2_grpc.BackendStub)
    ok = {"top_p": 1.0, "repetition_penalty": 1.0, "rng": backend_pb2.Pcg64State(inc_low=1)}
    for step_id, sampling in enumerate([
        backend_pb2.ContinuationSampling(temperature=0.8, **{**ok, "rng": None}),  # no generator state
        backend_pb2.ContinuationSampling(temperature=0.8, **{**ok, "top_p": 1.5}),
        backend_pb2.ContinuationSampling(temperature=0.0, **{**ok, "repetition_penalty": 0.0}),
    ]):
        req = backend_pb2.StepRequest(step_id=100 + step_id)
        req.batch.add(sequence_id=987660 + step_id, tokens=[1], greedy_steps=2).sampling.CopyFrom(sampling)
        with pytest.raises(grpc.RpcError) as err:
            stub.Step(req, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "sampling" in err.value.details()


def test_greedy_steps_generation_equals_one_step_per_token(client, in_process_tokens):
    seq = client.new_sequence()
    tokens, logits = client.step_continue([(seq, PROMPT)], [7], ())[0]
    while len(tokens) < N_NEW:
        tokens.append(int(logits[-1].argmax()))
        more, logits = client.step_continue([(seq, [tokens[-1]])], [min(5, N_NEW - len(tokens))], ())[0]
        tokens += more
    assert tokens[:N_NEW] == in_process_tokens
    client.release(seq)


def test_a_stop_token_ends_the_continuation_unfed(client, runtime, in_process_tokens):
    stop = in_process_tokens[3]
    first = in_process_tokens.index(stop)  # the first time greedy decoding meets it
    seq = client.new_sequence()
    tokens, logits = client.step_continue([(seq, PROMPT)], [20], [stop])[0]
    assert tokens == in_process_tokens[: first + 1]  # it is reported ...
    assert client.n_past(seq) == len(PROMPT) + first  # ... and not fed
    # Feeding it now continues exactly as an uninterrupted greedy run.
    assert int(client.eval(seq, [stop])[-1].argmax()) == in_process_tokens[first + 1]
    client.release(seq)


def test_sigkill_mid_greedy_steps_replays_them_one_token_a_step(sup, client, in_process_tokens, monkeypatch):
    from tritium.plugin_host.fastlane import HostLane

    mp = sup.get("cpu")
    seq = client.new_sequence()
    tokens, logits = client.step_continue([(seq, PROMPT)], [6], ())[0]
    tokens.append(int(logits[-1].argmax()))
    real_answer, killed = HostLane._answer, []

    def kill_in_flight(self, method, response_cls, timeout):  # noqa: ANN001
        if not killed:
            killed.append(mp.instance.pid)
            os.kill(mp.instance.pid, signal.SIGKILL)
        return real_answer(self, method, response_cls, timeout)

    monkeypatch.setattr(HostLane, "_answer", kill_in_flight)
    restarts, replayed = mp.restarts, client.replayed_steps
    more, logits = client.step_continue([(seq, [tokens[-1]])], [6], ())[0]
    assert killed and mp.restarts == restarts + 1
    assert client.replayed_steps - replayed == 1 + 6  # the prompt, then each greedy token as its own step
    assert tokens + more == in_process_tokens[:13]
    client.release(seq)


def test_greedy_steps_are_refused_with_all_logits_and_past_the_context(sup, client):
    stub = sup.instance("cpu").stub(backend_pb2_grpc.BackendStub)
    req = backend_pb2.StepRequest(step_id=1)
    req.batch.add(sequence_id=987654, tokens=[1], all_logits=True, greedy_steps=2)
    with pytest.raises(grpc.RpcError) as err:
        stub.Step(req, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "greedy_steps" in err.value.details()
    req = backend_pb2.StepRequest(step_id=2)
    req.batch.add(sequence_id=987655, tokens=[1], greedy_steps=client.n_ctx)
    with pytest.raises(grpc.RpcError) as err:
        stub.Step(req, timeout=30)
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE and "n_ctx" in err.value.details()
