"""The tritium.serving.v1 gRPC API on 127.0.0.1 over the fake batch runtime, through a real channel."""

from __future__ import annotations

import time

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritium.core.engine.generate import generate
from tritium.core.sampling import SamplingParams
from tritium.core.serving.engine_loop import ServingEngine
from tritium.core.serving.grpc_api import start_grpc_server
from tritium.core.serving.serving_config import ServingConfig
from tritium.protos.tritium.serving.v1 import serving_pb2 as pb
from tritium.protos.tritium.serving.v1 import serving_pb2_grpc

from tests.serving.fakes import EOS, FakeBatchRuntime, fake_model


def serve(runtime=None, start=True, **cfg):
    engine = ServingEngine(fake_model(), [runtime or FakeBatchRuntime()], ServingConfig(**cfg))
    if start:
        engine.start()
    server, port = start_grpc_server(engine, "fake-model", "127.0.0.1", 0)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return engine, server, channel, serving_pb2_grpc.ServingStub(channel)


@pytest.fixture(scope="module")
def stub():
    engine, server, channel, stub = serve()
    yield stub
    channel.close()
    server.stop(None)
    engine.stop()


def greedy(max_tokens, **kw):
    return pb.SamplingParams(temperature=0, max_tokens=max_tokens, **kw)


def reference(ids, max_tokens, **kw):
    params = SamplingParams(temperature=0, max_tokens=max_tokens, **kw)
    return list(generate(fake_model(), ids, params, runtime=FakeBatchRuntime()))


def test_generate_streams_tokens_and_ends_with_finish_reason_and_usage(stub):
    ids = fake_model().tokenizer.encode("grpc")
    chunks = list(stub.Generate(pb.GenerateRequest(prompt="grpc", sampling=greedy(6), request_id="r1",
                                                   logprobs=True), timeout=10))
    ref = reference(ids, 6)
    assert [c.token_ids[0] for c in chunks] == [c.token_id for c in ref]
    assert "".join(c.text for c in chunks) == "".join(c.text for c in ref)
    assert all(c.request_id == "r1" and len(c.logprobs) == 1 for c in chunks)
    assert [c.finish_reason for c in chunks[:-1]] == [pb.FINISH_REASON_UNSPECIFIED] * 5
    assert chunks[-1].finish_reason == pb.FINISH_REASON_LENGTH
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (len(ids), 6)


def test_token_and_chat_inputs(stub):
    tok = fake_model().tokenizer
    chunks = list(stub.Generate(pb.GenerateRequest(prompt_tokens=pb.TokenIds(ids=[1, 2, 3]),
                                                   sampling=greedy(3)), timeout=10))
    assert [c.token_ids[0] for c in chunks] == [c.token_id for c in reference([1, 2, 3], 3)]
    messages = [{"role": "user", "content": "hi"}]
    chat = pb.ChatMessages(messages=[pb.ChatMessage(role="user", content="hi")])
    chunks = list(stub.Generate(pb.GenerateRequest(chat=chat, sampling=greedy(3)), timeout=10))
    assert [c.token_ids[0] for c in chunks] == [c.token_id for c in reference(tok.encode_chat(messages), 3)]


def test_finish_reasons_stop_and_stop_string():
    def rule(prefix):  # "abSTOP" then EOS, after a 4-token prompt
        script = [ord(c) for c in "abSTOP"] + [EOS]
        return script[min(len(prefix) - 4, len(script) - 1)]

    engine, server, channel, stub = serve(FakeBatchRuntime(rule=rule))
    try:
        chunks = list(stub.Generate(pb.GenerateRequest(prompt="abc", sampling=greedy(20)), timeout=10))
        assert chunks[-1].finish_reason == pb.FINISH_REASON_STOP and chunks[-1].token_ids == [EOS]
        chunks = list(stub.Generate(pb.GenerateRequest(prompt="abc", sampling=greedy(20, stop=["ST"])),
                                    timeout=10))
        assert "".join(c.text for c in chunks) == "ab"
        assert chunks[-1].finish_reason == pb.FINISH_REASON_STOP_STRING
    finally:
        channel.close()
        server.stop(None)
        engine.stop()


def test_models(stub):
    models = stub.Models(pb.ModelsRequest(), timeout=10).models
    assert [(m.id, m.n_ctx, m.n_vocab) for m in models] == [("fake-model", 64, fake_model().config.n_vocab)]


@pytest.mark.parametrize("request_, field", [
    (pb.GenerateRequest(), "input"),
    (pb.GenerateRequest(prompt=""), "prompt"),
    (pb.GenerateRequest(prompt_tokens=pb.TokenIds(ids=[])), "prompt_tokens"),
    (pb.GenerateRequest(prompt_tokens=pb.TokenIds(ids=[1, 100000])), "prompt"),
    (pb.GenerateRequest(chat=pb.ChatMessages()), "chat.messages"),
    (pb.GenerateRequest(chat=pb.ChatMessages(messages=[pb.ChatMessage(role="robot", content="x")])),
     "chat.messages[0].role"),
    (pb.GenerateRequest(prompt="x" * 80), "prompt"),
    (pb.GenerateRequest(prompt="x", sampling=pb.SamplingParams(max_tokens=63)), "sampling.max_tokens"),
    (pb.GenerateRequest(prompt="x", sampling=pb.SamplingParams(max_tokens=0)), "max_tokens"),
    (pb.GenerateRequest(prompt="x", sampling=pb.SamplingParams(temperature=-1)), "sampling.temperature"),
    (pb.GenerateRequest(prompt="x", sampling=pb.SamplingParams(top_p=0)), "sampling.top_p"),
    (pb.GenerateRequest(prompt="x", sampling=pb.SamplingParams(temperature=float("nan"))), "temperature"),
    (pb.GenerateRequest(prompt="x", sampling=pb.SamplingParams(stop_token_ids=[-3])), "stop_token_ids"),
])
def test_invalid_requests_are_invalid_argument_naming_the_field(stub, request_, field):
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Generate(request_, timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.value.details()


def test_unknown_model_is_not_found(stub):
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Generate(pb.GenerateRequest(model="gpt-9", prompt="x"), timeout=10))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "model" in err.value.details()


def test_full_queue_is_resource_exhausted_with_retry_after():
    engine, server, channel, stub = serve(start=False, max_queue=1, retry_after_s=4)
    try:
        engine.submit([1, 2], SamplingParams(max_tokens=1))  # the engine is not running: it stays queued
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Generate(pb.GenerateRequest(prompt="x"), timeout=10))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert ("retry-after", "4") in err.value.trailing_metadata()
    finally:
        channel.close()
        server.stop(None)
        engine.stop()


def test_a_cancelled_call_cancels_its_request():
    engine, server, channel, stub = serve(FakeBatchRuntime(delay_s=0.005))
    try:
        call = stub.Generate(pb.GenerateRequest(prompt="x", sampling=greedy(60)), timeout=10)
        next(call)
        call.cancel()
        deadline = time.monotonic() + 10
        while engine.load()["cancelled"] == 0 or engine.load()["running"]:
            assert time.monotonic() < deadline, engine.load()
            time.sleep(0.01)
        assert engine.counters.tokens_generated < 60
    finally:
        channel.close()
        server.stop(None)
        engine.stop()


floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
sampling = st.builds(
    pb.SamplingParams, temperature=st.none() | floats, top_p=st.none() | floats,
    top_k=st.none() | st.integers(0, 2**32 - 1), min_p=st.none() | floats,
    repetition_penalty=st.none() | floats, seed=st.none() | st.integers(0, 2**64 - 1),
    max_tokens=st.none() | st.integers(0, 2**32 - 1), stop=st.lists(st.text(max_size=4), max_size=3),
    stop_token_ids=st.lists(st.integers(-2**31, 2**31 - 1), max_size=3), ignore_eos=st.booleans())
inputs = st.one_of(
    st.builds(dict, prompt=st.text(max_size=40)),
    st.builds(dict, prompt_tokens=st.builds(pb.TokenIds, ids=st.lists(st.integers(-2**31, 2**31 - 1),
                                                                        max_size=8))),
    st.builds(dict, chat=st.builds(pb.ChatMessages, messages=st.lists(st.builds(
        pb.ChatMessage, role=st.sampled_from(["user", "system", "assistant", "x", ""]),
        content=st.text(max_size=20)), max_size=3))),
    st.just({}))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(["", "fake-model", "other"]), input_=inputs, sampling=st.none() | sampling,
       logprobs=st.booleans())
def test_any_generate_request_gets_a_deliberate_status(stub, model, input_, sampling, logprobs):
    request = pb.GenerateRequest(model=model, logprobs=logprobs, sampling=sampling, **input_)
    try:
        chunks = list(stub.Generate(request, timeout=10))
    except grpc.RpcError as e:
        deliberate = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
        assert e.code() in deliberate, (e.code(), e.details())
        return
    assert chunks and chunks[-1].finish_reason != pb.FINISH_REASON_UNSPECIFIED
