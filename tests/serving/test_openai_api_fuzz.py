"""Property tests: whatever a client sends, the API answers with a 2xx/4xx (never 500) and keeps serving."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritium.core.serving.engine_loop import ServingEngine
from tritium.core.serving.openai_api import create_app
from tritium.core.serving.serving_config import ServingConfig

from tests.serving.fakes import N_VOCAB, FakeBatchRuntime, fake_model

ALLOWED = {200, 400, 404, 429}
PATHS = st.sampled_from(["/v1/completions", "/v1/chat/completions"])

json_scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
short_text = st.text(min_size=1, max_size=4)
valid_common = {
    "model": st.just("fake-model"), "max_tokens": st.integers(1, 20), "temperature": st.floats(0, 2),
    "top_p": st.floats(0.01, 1), "top_k": st.integers(0, 50), "min_p": st.floats(0, 1),
    "seed": st.integers(0, 2**40), "stop": short_text | st.lists(short_text, max_size=4),
    "n": st.integers(1, 3), "presence_penalty": st.floats(-2, 2), "frequency_penalty": st.floats(-2, 2),
    "user": st.text(max_size=10), "stream": st.booleans(), "priority": st.integers(-5, 5),
    "ignore_eos": st.booleans(), "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
}
valid_by_path = {
    "/v1/completions": {**valid_common, "logprobs": st.integers(0, 5),
                        "prompt": st.text(min_size=1, max_size=30)
                        | st.lists(st.integers(0, N_VOCAB - 1), min_size=1, max_size=8)},
    "/v1/chat/completions": {**valid_common, "logprobs": st.booleans(), "top_logprobs": st.integers(0, 5),
                             "max_completion_tokens": st.integers(1, 20),
                             "messages": st.lists(st.fixed_dictionaries({
                                 "role": st.sampled_from(["user", "system", "assistant", "developer"]),
                                 "content": st.text(max_size=30)}), min_size=1, max_size=3)},
}
REQUIRED = {"/v1/completions": "prompt", "/v1/chat/completions": "messages"}


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict]:
    """A valid request with some optional fields, then maybe one field broken or one removed."""
    path = draw(PATHS)
    valid = valid_by_path[path]
    names = draw(st.sets(st.sampled_from(sorted(valid)), max_size=6)) | {REQUIRED[path]}
    body = {name: draw(valid[name]) for name in sorted(names)}
    mutation = draw(st.sampled_from(["none", "break", "drop"]))
    if mutation == "break":
        body[draw(st.sampled_from(sorted(valid)))] = draw(json_values)
    elif mutation == "drop":
        body.pop(draw(st.sampled_from(sorted(body))))
    return path, body


@pytest.fixture(scope="module")
def client():
    engine = ServingEngine(fake_model(), [FakeBatchRuntime()], ServingConfig(max_queue=16))
    with TestClient(create_app(engine, model_id="fake-model")) as c:
        yield c


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(response) -> None:
    assert response.status_code in ALLOWED, (response.status_code, response.text[:300])
    if response.status_code != 200:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@SETTINGS
@given(path=PATHS, body=st.binary(max_size=64))
def test_random_bytes_never_500(client, path, body):
    _check(client.post(path, content=body))


@SETTINGS
@given(path=PATHS, body=json_values)
def test_any_json_value_never_500(client, path, body):
    _check(client.post(path, content=json.dumps(body)))


@SETTINGS
@given(request=requests())
def test_valid_and_broken_requests_never_500_and_server_keeps_serving(client, request):
    path, body = request
    _check(client.post(path, content=json.dumps(body)))
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
