"""`tritium serve` as a real process on 127.0.0.1 with the bitnet.cpp fixture model, driven by the official
`openai` package (sync, async, streaming), by curl, by a gRPC client, and by clients that go away.

Greedy answers are compared with single-request `generate()` on the same model in this process: what
the server returns under continuous batching must be what one request alone produces.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import time

import grpc
import httpx
import openai
import pytest
from tritium.core.compute import Runtime
from tritium.core.engine.generate import generate
from tritium.core.model.loader import load_model
from tritium.core.sampling import SamplingParams
from tritium.protos.tritium.serving.v1 import serving_pb2 as pb
from tritium.protos.tritium.serving.v1 import serving_pb2_grpc

from tests.conftest import BITNETCPP_FIXTURES
from tests.serving.server_process import free_port, start_server

MODEL = BITNETCPP_FIXTURES / "bitnet-b158-tiny.i2_s.gguf"
MODEL_ID = "bitnet-b158-tiny.i2_s"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(HTTP base URL, gRPC port) of one `tritium serve` process for the whole module."""
    port, grpc_port = free_port(), free_port()
    config = tmp_path_factory.mktemp("serve") / "serving.toml"
    config.write_text("[serving]\nmax_batch_size = 8\nprefill_chunk = 32\nmax_queue = 32\nn_ctx = 1024\n")
    log = tmp_path_factory.mktemp("serve") / "server.log"
    proc, base = start_server(["--model", str(MODEL), "--host", "127.0.0.1", "--grpc-port", str(grpc_port),
                               "--config", str(config), "--threads", "1"], port, log)
    yield base, grpc_port
    proc.terminate()  # SIGTERM: uvicorn shuts down, the lifespan stops the engine, the signal ends it
    try:
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM), log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "engine stopped after" in text and "Traceback" not in text, text


@pytest.fixture(scope="module")
def server(served):
    return served[0]


@pytest.fixture(scope="module")
def reference():
    """Greedy text of one request alone (no server, no batching), via the engine's generate()."""
    model = load_model(MODEL)
    runtime = Runtime(model.config, model.weights, n_ctx=256, threads=1)

    def run(prompt, max_tokens: int, ignore_eos: bool = False) -> str:
        params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=ignore_eos)
        return "".join(c.text for c in generate(model, prompt, params, runtime=runtime))

    run.tokenizer = model.tokenizer
    return run


def sync_client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=60)


def test_models_and_sync_completion_match_a_lone_request(server, reference):
    client = sync_client(server)
    assert [m.id for m in client.models.list().data] == [MODEL_ID]
    out = client.completions.create(model=MODEL_ID, prompt="The quick brown fox", max_tokens=12,
                                     temperature=0)
    assert out.choices[0].text == reference("The quick brown fox", 12)
    assert out.usage.completion_tokens <= 12 and out.usage.prompt_tokens > 0
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


def test_sync_chat_and_streaming_chat_agree(server, reference):
    client = sync_client(server)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    full = client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=10, temperature=0)
    ids = reference.tokenizer.encode_chat(messages)
    assert full.choices[0].message.role == "assistant"
    assert full.choices[0].message.content == reference(ids, 10)
    assert full.usage.prompt_tokens == len(ids)
    chunks = list(client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=10,
                                                 temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == full.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_async_concurrent_requests_are_batched_and_each_matches_a_lone_request(server, reference):
    prompts = ["One", "Two words", "A third, longer prompt about nothing", "4"]
    before = httpx.get(f"{server}/health").json()

    async def main():
        client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=60)
        outs = await asyncio.gather(*(client.completions.create(
            model=MODEL_ID, prompt=p, max_tokens=24, temperature=0, extra_body={"ignore_eos": True})
            for p in prompts))
        stream = await client.completions.create(model=MODEL_ID, prompt=prompts[0], max_tokens=24,
                                                 temperature=0, stream=True, extra_body={"ignore_eos": True})
        streamed = "".join([c.choices[0].text async for c in stream if c.choices])
        await client.close()
        return outs, streamed

    outs, streamed = asyncio.run(main())
    after = httpx.get(f"{server}/health").json()
    for p, out in zip(prompts, outs, strict=True):
        assert out.choices[0].text == reference(p, 24, ignore_eos=True)
        assert out.usage.completion_tokens == 24
    assert streamed == outs[0].choices[0].text
    # 5 × 24 tokens in fewer steps than tokens: the concurrent requests shared steps.
    assert after["tokens_generated"] - before["tokens_generated"] == 5 * 24
    assert after["steps"] - before["steps"] < 5 * 24


def test_openai_client_sees_openai_errors(server):
    client = sync_client(server)
    with pytest.raises(openai.NotFoundError) as err:
        client.completions.create(model="no-such-model", prompt="x", max_tokens=1)
    assert err.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "x"}],
                                       temperature=7)
    assert err.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL_ID, prompt="word " * 1100, max_tokens=1)
    assert err.value.body["param"] == "prompt" and err.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL_ID, prompt="x", max_tokens=2000)
    assert err.value.body["param"] == "max_tokens"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_streams_sse_and_gets_400_for_bad_json(server):
    body = json.dumps({"model": MODEL_ID, "prompt": "Hi", "max_tokens": 5, "stream": True})
    out = subprocess.run(["curl", "-sN", f"{server}/v1/completions", "-d", body],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    events = [e for e in out.split("\n\n") if e]
    assert events[-1] == "data: [DONE]" and len(events) >= 2
    assert json.loads(events[-2][len("data: "):])["usage"]["completion_tokens"] <= 5
    bad = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", f"{server}/v1/chat/completions",
                          "-H", "Content-Type: application/json", "-d", '{"messages": [}'],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    payload, status = bad.rsplit("\n", 1)
    assert status == "400" and json.loads(payload)["error"]["code"] == "invalid_json"


def test_a_client_that_disconnects_mid_stream_cancels_its_request(server):
    before = httpx.get(f"{server}/health").json()
    body = {"model": MODEL_ID, "prompt": "Tell a long story", "max_tokens": 1000, "stream": True,
            "ignore_eos": True}
    with httpx.stream("POST", f"{server}/v1/completions", json=body, timeout=30) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(3)]
        assert got[0].startswith("data: ")
    # The server notices at its next write, cancels, and the engine frees the KV at the next step.
    deadline = time.monotonic() + 20
    while True:
        health = httpx.get(f"{server}/health").json()
        if health["cancelled"] > before["cancelled"] and health["running"] == 0:
            break
        assert time.monotonic() < deadline, health
        time.sleep(0.05)
    assert health["tokens_generated"] - before["tokens_generated"] < 1000


def test_a_client_that_gives_up_on_a_non_streaming_request_cancels_it(server):
    before = httpx.get(f"{server}/health").json()
    body = {"model": MODEL_ID, "prompt": "Tell a long story", "max_tokens": 1000, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server}/v1/completions", json=body, timeout=httpx.Timeout(30, read=0.1))
    deadline = time.monotonic() + 20
    while True:
        health = httpx.get(f"{server}/health").json()
        if health["cancelled"] > before["cancelled"] and health["running"] == 0:
            break
        assert time.monotonic() < deadline, health
        time.sleep(0.05)
    assert health["tokens_generated"] - before["tokens_generated"] < 1000


def test_grpc_generate_and_models_against_the_same_process(served, reference):
    _, grpc_port = served
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = serving_pb2_grpc.ServingStub(channel)
        assert [m.id for m in stub.Models(pb.ModelsRequest(), timeout=10).models] == [MODEL_ID]
        request = pb.GenerateRequest(model=MODEL_ID, prompt="The quick brown fox",
                                     sampling=pb.SamplingParams(temperature=0, max_tokens=12))
        chunks = list(stub.Generate(request, timeout=30))
        assert "".join(c.text for c in chunks) == reference("The quick brown fox", 12)
        assert chunks[-1].finish_reason in (pb.FINISH_REASON_LENGTH, pb.FINISH_REASON_STOP)
        with pytest.raises(grpc.RpcError) as err:
            bad = pb.GenerateRequest(prompt="x", sampling=pb.SamplingParams(top_p=2))
            list(stub.Generate(bad, timeout=10))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "top_p" in err.value.details()
