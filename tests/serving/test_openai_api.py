"""The OpenAI-compatible HTTP API in process (Starlette TestClient) over the fake batch runtime."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from tritium.core.engine.generate import generate
from tritium.core.sampling import SamplingParams
from tritium.core.serving.engine_loop import ServingEngine
from tritium.core.serving.openai_api import create_app
from tritium.core.serving.serving_config import ServingConfig

from tests.serving.fakes import EOS, FakeBatchRuntime, fake_model

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
HELLO = [{"role": "user", "content": "hello"}]


def make_app(runtime=None, **cfg):
    engine = ServingEngine(fake_model(), [runtime or FakeBatchRuntime()], ServingConfig(**cfg))
    return create_app(engine, model_id="fake-model"), engine


@pytest.fixture(scope="module")
def client():
    app, _ = make_app()
    with TestClient(app) as c:
        yield c


def reference_text(prompt_ids, max_tokens):
    chunks = generate(fake_model(), prompt_ids, SamplingParams(temperature=0, max_tokens=max_tokens),
                      runtime=FakeBatchRuntime())
    return "".join(c.text for c in chunks)


def sse_events(response):
    lines = [line for line in response.text.split("\n\n") if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[len("data: "):]) for line in lines[:-1]]


def assert_error(response, status, param, code=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["param"] == param, body
    if code:
        assert body["error"]["code"] == code, body
    if param:
        assert param.split(".")[0] in body["error"]["message"]
    return body["error"]


# ---- success paths ---------------------------------------------------------------------------------
def test_completion_matches_single_request_generate_and_reports_usage(client):
    r = client.post(COMPLETIONS, json={"model": "fake-model", "prompt": "Once", "max_tokens": 6,
                                       "temperature": 0})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "text_completion" and body["model"] == "fake-model"
    ids = fake_model().tokenizer.encode("Once")
    assert body["choices"][0]["text"] == reference_text(ids, 6)
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 6, "total_tokens": len(ids) + 6}


def test_completion_default_max_tokens_is_16_and_token_id_prompts_work(client):
    ids = fake_model().tokenizer.encode("ids")
    body = client.post(COMPLETIONS, json={"prompt": ids, "temperature": 0}).json()
    assert body["usage"]["completion_tokens"] == 16
    assert body["choices"][0]["text"] == reference_text(ids, 16)


def test_several_prompts_and_n_choices_are_indexed_prompt_major(client):
    body = client.post(COMPLETIONS, json={"prompt": ["a", "bb"], "n": 2, "max_tokens": 3,
                                          "temperature": 0}).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    texts = [c["text"] for c in body["choices"]]
    tok = fake_model().tokenizer
    assert texts == [reference_text(tok.encode("a"), 3)] * 2 + [reference_text(tok.encode("bb"), 3)] * 2
    assert body["usage"]["prompt_tokens"] == len(tok.encode("a")) + len(tok.encode("bb"))
    assert body["usage"]["completion_tokens"] == 12


def test_seeded_sampling_is_reproducible_and_choices_differ(client):
    req = {"prompt": "seed", "max_tokens": 8, "temperature": 2.0, "top_k": 0, "seed": 3, "n": 3}
    first = client.post(COMPLETIONS, json=req).json()
    again = client.post(COMPLETIONS, json=req).json()
    texts = [c["text"] for c in first["choices"]]
    assert texts == [c["text"] for c in again["choices"]]
    assert len(set(texts)) == 3  # choice j is seeded with seed + j


def test_completion_logprobs(client):
    body = client.post(COMPLETIONS, json={"prompt": "lp", "max_tokens": 3, "temperature": 0,
                                          "logprobs": 2}).json()
    lp = body["choices"][0]["logprobs"]
    assert "".join(lp["tokens"]) == body["choices"][0]["text"]
    assert len(lp["token_logprobs"]) == 3 and all(x <= 0 for x in lp["token_logprobs"])
    assert all(len(top) == 2 for top in lp["top_logprobs"]) and lp["text_offset"] == [0, 1, 2]


def test_chat_uses_the_chat_template_and_stops_at_fallback_turn_markers(client):
    body = client.post(CHAT, json={"model": "fake-model", "messages": HELLO, "max_tokens": 5,
                                   "temperature": 0}).json()
    ids = fake_model().tokenizer.encode_chat(HELLO)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": reference_text(ids, 5)}
    assert body["usage"]["prompt_tokens"] == len(ids)

    def rule(prefix):  # the model starts a new user turn after "ok"
        script = [ord(c) for c in "ok<|user|>more"] + [EOS]
        return script[min(len(prefix) - len(ids), len(script) - 1)]

    app, _ = make_app(FakeBatchRuntime(rule=rule))
    with TestClient(app) as c:
        body = c.post(CHAT, json={"messages": HELLO, "temperature": 0}).json()
    assert body["choices"][0]["message"]["content"] == "ok"
    assert body["choices"][0]["finish_reason"] == "stop"


def test_chat_logprobs_and_max_completion_tokens(client):
    body = client.post(CHAT, json={"messages": HELLO, "max_completion_tokens": 2, "temperature": 0,
                                   "logprobs": True, "top_logprobs": 3}).json()
    content = body["choices"][0]["logprobs"]["content"]
    assert len(content) == 2 and all(len(e["top_logprobs"]) == 3 for e in content)
    assert "".join(e["token"] for e in content) == body["choices"][0]["message"]["content"]
    assert content[0]["bytes"] == list(content[0]["token"].encode())


def test_stop_string_is_not_returned(client):
    ids = fake_model().tokenizer.encode("stop")
    full = reference_text(ids, 10)
    stop = full[3:5]
    body = client.post(COMPLETIONS, json={"prompt": "stop", "max_tokens": 10, "temperature": 0,
                                          "stop": stop}).json()
    assert body["choices"][0]["text"] == full[:full.index(stop)]
    assert body["choices"][0]["finish_reason"] == "stop"


def test_chat_stream_is_sse_ending_in_done_with_usage(client):
    r = client.post(CHAT, json={"messages": HELLO, "max_tokens": 4, "temperature": 0, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
    assert text == reference_text(fake_model().tokenizer.encode_chat(HELLO), 4)
    assert events[-1]["choices"][0]["finish_reason"] == "length"
    assert events[-1]["usage"]["completion_tokens"] == 4


def test_completion_stream_with_include_usage_ends_with_a_usage_chunk(client):
    r = client.post(COMPLETIONS, json={"prompt": "s", "max_tokens": 3, "temperature": 0, "stream": True,
                                       "n": 2, "stream_options": {"include_usage": True}})
    events = sse_events(r)
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 6
    for i in (0, 1):
        mine = [e["choices"][0] for e in events[:-1] if e["choices"][0]["index"] == i]
        assert "".join(c["text"] for c in mine) == reference_text(fake_model().tokenizer.encode("s"), 3)
        assert mine[-1]["finish_reason"] == "length"


def test_models_health_and_openapi(client):
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == "fake-model"
    assert client.get("/v1/models/fake-model").json()["id"] == "fake-model"
    assert_error(client.get("/v1/models/other"), 404, "model", "model_not_found")
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["waiting"] == 0
    schema = client.get("/openapi.json").json()
    assert {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health"} <= set(schema["paths"])
    responses = schema["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert {"200", "400", "404", "429"} <= set(responses) and "422" not in responses


# ---- refusals --------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, param", [
    ({"messages": []}, "messages"),
    ({}, "messages"),
    ({"messages": [{"role": "user"}]}, "messages.0.content"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ({"messages": "hello"}, "messages"),
    ({"messages": HELLO, "temperature": "hot"}, "temperature"),
    ({"messages": HELLO, "temperature": -0.5}, "temperature"),
    ({"messages": HELLO, "temperature": 2.5}, "temperature"),
    ({"messages": HELLO, "top_p": 0}, "top_p"),
    ({"messages": HELLO, "top_p": 1.5}, "top_p"),
    ({"messages": HELLO, "top_k": -1}, "top_k"),
    ({"messages": HELLO, "min_p": 2}, "min_p"),
    ({"messages": HELLO, "presence_penalty": 3}, "presence_penalty"),
    ({"messages": HELLO, "frequency_penalty": -2.5}, "frequency_penalty"),
    ({"messages": HELLO, "max_tokens": 0}, "max_tokens"),
    ({"messages": HELLO, "max_tokens": "5"}, "max_tokens"),
    ({"messages": HELLO, "max_tokens": 2.5}, "max_tokens"),
    ({"messages": HELLO, "n": 0}, "n"),
    ({"messages": HELLO, "n": True}, "n"),
    ({"messages": HELLO, "seed": "x"}, "seed"),
    ({"messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"messages": HELLO, "stop": [""]}, "stop"),
    ({"messages": HELLO, "stream": "yes"}, "stream"),
    ({"messages": HELLO, "logprobs": 1}, "logprobs"),
    ({"messages": HELLO, "top_logprobs": 50, "logprobs": True}, "top_logprobs"),
    ({"messages": HELLO, "top_logprobs": 2}, "top_logprobs"),
    ({"messages": HELLO, "user": 7}, "user"),
    ({"messages": HELLO, "model": 7}, "model"),
])
def test_chat_refusals_name_the_field(client, body, param):
    assert_error(client.post(CHAT, json=body), 400, param)


@pytest.mark.parametrize("body, param", [
    ({}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": 5}, "prompt"),
    ({"prompt": [1, -2]}, "prompt"),
    ({"prompt": [1, 99999]}, "prompt"),
    ({"prompt": "x", "logprobs": 21}, "logprobs"),
    ({"prompt": "x", "echo": True}, "echo"),
    ({"prompt": "x", "n": 9}, "n"),  # max_n = 8
    ({"prompt": "x", "max_tokens": 5000}, "max_tokens"),  # max_tokens_limit = 4096
    ({"prompt": ["a"] * 9, "n": 8}, "n"),  # 72 sequences > max_queue = 64: could never be queued
])
def test_completion_refusals_name_the_field(client, body, param):
    assert_error(client.post(COMPLETIONS, json=body), 400, param)


def test_malformed_json_and_non_object_bodies(client):
    err = assert_error(client.post(CHAT, content=b'{"messages": [}'), 400, None, "invalid_json")
    assert "not valid JSON" in err["message"]
    assert_error(client.post(CHAT, content=b"[1, 2]"), 400, None, "invalid_body")
    assert_error(client.post(CHAT, content=b""), 400, None, "invalid_body")
    assert_error(client.post(CHAT, content=b"\xff\xfe"), 400, None, "invalid_json")
    # curl -d sends a form content type: the body is still read as JSON.
    r = client.post(CHAT, content=json.dumps({"messages": HELLO, "max_tokens": 1}),
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200


def test_unknown_model_is_404(client):
    r = client.post(CHAT, json={"model": "gpt-9", "messages": HELLO})
    assert_error(r, 404, "model", "model_not_found")
    assert_error(client.post(COMPLETIONS, json={"model": "gpt-9", "prompt": "x"}), 404, "model")


def test_prompt_longer_than_the_context_and_max_tokens_beyond_it(client):
    # The fake model's context is 64 tokens.
    err = assert_error(client.post(COMPLETIONS, json={"prompt": "x" * 80}), 400, "prompt",
                       "context_length_exceeded")
    assert "64" in err["message"]
    assert_error(client.post(CHAT, json={"messages": [{"role": "user", "content": "y" * 80}]}), 400,
                 "messages", "context_length_exceeded")
    err = assert_error(client.post(COMPLETIONS, json={"prompt": "x" * 40, "max_tokens": 30}), 400,
                       "max_tokens", "context_length_exceeded")
    assert "at most 23" in err["message"]
    assert_error(client.post(CHAT, json={"messages": HELLO, "max_completion_tokens": 60}), 400,
                 "max_completion_tokens", "context_length_exceeded")


def test_unknown_route_and_method_get_openai_bodies(client):
    assert_error(client.get("/v1/nothing"), 404, None)
    assert_error(client.get(CHAT), 405, None)


def test_full_queue_answers_429_with_retry_after():
    app, engine = make_app(max_queue=1, retry_after_s=7)
    client = TestClient(app)  # no lifespan: the engine thread is not running, so the queue stays full
    engine.submit(fake_model().tokenizer.encode("occupy"), SamplingParams(max_tokens=1))
    r = client.post(CHAT, json={"messages": HELLO, "max_tokens": 1})
    err = assert_error(r, 429, None, "queue_full")
    assert r.headers["retry-after"] == "7" and "full" in err["message"]
    engine.stop()
    assert_error(client.post(CHAT, json={"messages": HELLO}), 503, None, "shutting_down")


def test_a_backend_failure_is_a_500_with_an_openai_body_and_the_server_keeps_serving():
    runtime = FakeBatchRuntime()
    app, _ = make_app(runtime)
    with TestClient(app) as c:
        runtime.fail_next = True
        err = assert_error(c.post(COMPLETIONS, json={"prompt": "x", "max_tokens": 2}), 500, None)
        assert "scripted backend failure" in err["message"]
        assert c.post(COMPLETIONS, json={"prompt": "x", "max_tokens": 2}).status_code == 200


def test_a_tiny_temperature_is_greedy(client):
    greedy = client.post(COMPLETIONS, json={"prompt": "t", "max_tokens": 5, "temperature": 0}).json()
    tiny = client.post(COMPLETIONS, json={"prompt": "t", "max_tokens": 5, "temperature": 1e-30}).json()
    assert tiny["choices"][0]["text"] == greedy["choices"][0]["text"]
