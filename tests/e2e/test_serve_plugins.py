"""`tritium serve` with its default plugin processes (backend `cpu`, scheduler `basic`) on the bitnet.cpp
fixture model: crash isolation through the server, the Admin service (list, hot plug, hot unplug) and
the Prometheus `/metrics` endpoint.

The crash test sends concurrent greedy streaming requests with the official `openai` client, SIGKILLs
the backend plugin process while they generate, and requires exactly the text of an undisturbed run
(the same requests through the same server before the kill, and each request alone in-process): the
supervisor restarts the plugin, the backend client replays the lost KV cache, no request is lost.
"""

from __future__ import annotations

import asyncio
import os
import signal
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

from tests.conftest import BITNETCPP_FIXTURES, REPO
from tests.serving.server_process import free_port, start_server

MODEL = BITNETCPP_FIXTURES / "bitnet-b158-tiny.i2_s.gguf"
MODEL_ID = "bitnet-b158-tiny.i2_s"
PROMPTS = ["One", "Two words", "A third, longer prompt about nothing at all", "4", "The quick brown fox",
           "Hello there"]
MAX_TOKENS = 40


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(HTTP base URL, Admin stub, server log path) of one `tritium serve` with plugins."""
    port, admin_port = free_port(), free_port()
    folder = tmp_path_factory.mktemp("serve-plugins")
    config = folder / "serving.toml"
    # f32 KV: with the fp16 emulation of an i8_s model (bitnet.cpp's rounding), a step rounds differently
    # when the whole batch has one token than when it has several, so a request's greedy text depends on
    # the requests batched with it (as in bitnet.cpp). With f32 it depends on its own tokens only, and
    # the lone-request reference is exact. Every prompt is prefilled in one chunk.
    config.write_text("[serving]\nmax_batch_size = 8\nprefill_chunk = 64\nmax_batch_tokens = 512\n"
                      "max_queue = 32\nn_ctx = 512\nscheduler_type = \"latency\"\nkv_dtype = \"f32\"\n")
    log = folder / "server.log"
    args = ["--model", str(MODEL), "--admin-port", str(admin_port), "--config", str(config), "--threads", "1"]
    proc, base = start_server(args, port, log)
    channel = grpc.insecure_channel(f"127.0.0.1:{admin_port}")
    admin = serving_pb2_grpc.AdminStub(channel)
    pids = [p.pid for p in admin.ListPlugins(pb.ListPluginsRequest(), timeout=10).plugins]
    yield base, admin, log
    channel.close()
    proc.terminate()
    try:
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM), log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "engine stopped after" in text and "Traceback" not in text, text
    time.sleep(0.5)
    for pid in pids:  # the plugin processes went with the server
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()


def _metric(base: str, name: str) -> float:
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def _plugins(admin) -> dict[str, pb.PluginStatus]:
    return {p.name: p for p in admin.ListPlugins(pb.ListPluginsRequest(), timeout=10).plugins}


@pytest.fixture(scope="module")
def alone():
    """Each prompt's greedy text alone, in this process (no server, no batching, no plugin)."""
    model = load_model(MODEL)
    runtime = Runtime(model.config, model.weights, n_ctx=256, threads=1, kv_dtype="f32")
    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True)
    return ["".join(c.text for c in generate(model, p, params, runtime=runtime)) for p in PROMPTS]


async def _run_streams(base: str, on_chunk=None) -> list[str]:
    """Every prompt as a concurrent greedy streaming completion; `on_chunk(total_chunks)` after each."""
    client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)
    seen = 0

    async def one(prompt: str) -> str:
        nonlocal seen
        stream = await client.completions.create(model=MODEL_ID, prompt=prompt, max_tokens=MAX_TOKENS,
                                                 temperature=0, stream=True, extra_body={"ignore_eos": True})
        parts = []
        async for chunk in stream:
            if chunk.choices:
                parts.append(chunk.choices[0].text)
                seen += 1
                if on_chunk is not None:
                    on_chunk(seen)
        return "".join(parts)

    try:
        return list(await asyncio.gather(*(one(p) for p in PROMPTS)))
    finally:
        await client.close()


def test_plugins_are_listed_by_the_admin_service_and_metrics_are_served(served):
    base, admin, _ = served
    plugins = _plugins(admin)
    assert set(plugins) == {"cpu@0", "basic"}
    assert plugins["cpu@0"].kind == "backend" and plugins["basic"].kind == "scheduler"
    assert all(p.state == "ready" and p.pid > 0 and p.pid != os.getpid() for p in plugins.values())
    text = httpx.get(f"{base}/metrics", timeout=10).text
    for line in ('tritium_plugin_up{kind="backend",plugin="cpu@0"} 1.0',
                 'tritium_plugin_up{kind="scheduler",plugin="basic"} 1.0',
                 "tritium_engine_queue_depth ", "tritium_engine_running ",
                 "tritium_engine_tokens_per_second ",
                 'tritium_engine_step_latency_seconds{quantile="0.99"}'):
        assert line in text, line


def test_sigkill_of_the_backend_mid_generation_loses_no_request_and_changes_no_token(served, alone):
    base, admin, _ = served
    continued = _metric(base, "tritium_engine_continuation_tokens_total")
    undisturbed = asyncio.run(_run_streams(base))
    assert undisturbed == alone
    # Once all six decode, the backend chooses most tokens in greedy continuations (decode_steps 4).
    assert _metric(base, "tritium_engine_continuation_tokens_total") - continued > len(PROMPTS) * 10
    before = _plugins(admin)["cpu@0"]
    killed = []

    def kill_mid_generation(seen: int) -> None:
        # Every request is streaming by now (6 requests × 40 tokens; kill after 60 chunks).
        if seen == 60 and not killed:
            os.kill(before.pid, signal.SIGKILL)
            killed.append(seen)

    health0 = httpx.get(f"{base}/health").json()
    disturbed = asyncio.run(_run_streams(base, kill_mid_generation))
    assert killed, "the backend was never killed"
    assert disturbed == undisturbed
    after = _plugins(admin)["cpu@0"]
    assert after.restarts == before.restarts + 1 and after.pid != before.pid and after.state == "ready"
    health = httpx.get(f"{base}/health").json()
    assert health["finished"] - health0["finished"] == len(PROMPTS)
    assert health["tokens_generated"] - health0["tokens_generated"] == len(PROMPTS) * MAX_TOKENS
    metrics = httpx.get(f"{base}/metrics", timeout=10).text
    assert f'tritium_plugin_restarts_total{{kind="backend",plugin="cpu@0"}} {after.restarts:.1f}' in metrics


def test_sigkill_of_the_scheduler_mid_generation_changes_no_token(served, alone):
    base, admin, _ = served
    before = _plugins(admin)["basic"]
    killed = []

    def kill(seen: int) -> None:
        if seen == 30 and not killed:
            os.kill(before.pid, signal.SIGKILL)
            killed.append(seen)

    assert asyncio.run(_run_streams(base, kill)) == alone
    assert killed
    # Steps are not held up while the scheduler restarts (the in-core policy places them meanwhile);
    # the supervisor brings the plugin back in the background.
    deadline = time.monotonic() + 60
    while (after := _plugins(admin)["basic"]).restarts == before.restarts and time.monotonic() < deadline:
        time.sleep(0.2)
    assert after.restarts == before.restarts + 1 and after.pid != before.pid and after.state == "ready"
    assert asyncio.run(_run_streams(base)) == alone
    assert _metric(base, "tritium_scheduler_calls_total") > 0


def test_hot_plug_a_second_device_then_unplug_the_first_while_serving(served, alone):
    base, admin, _ = served
    added = admin.AddPlugin(pb.AddPluginRequest(path=str(REPO / "plugins" / "backend_cpu")), timeout=300)
    assert added.plugin.name == "cpu@1" and added.plugin.state == "ready"
    assert set(_plugins(admin)) == {"cpu@0", "cpu@1", "basic"}

    removed = []
    preempted0 = _metric(base, "tritium_engine_preemptions_total")

    def unplug_mid_generation(seen: int) -> None:
        if seen == 40 and not removed:  # requests are running on both devices (latency placement)
            removed.append(admin.RemovePlugin.future(pb.RemovePluginRequest(name="cpu@0", drain=True),
                                                     timeout=120))

    assert asyncio.run(_run_streams(base, unplug_mid_generation)) == alone
    reply = removed[0].result()
    assert reply.plugin.name == "cpu@0" and reply.plugin.state == "stopped"
    # The requests that were on device 0 were preempted and recomputed on device 1.
    assert _metric(base, "tritium_engine_preemptions_total") > preempted0
    assert set(_plugins(admin)) == {"cpu@1", "basic"}
    metrics = httpx.get(f"{base}/metrics", timeout=10).text
    assert 'tritium_engine_device_available{device="0"} 0.0' in metrics
    assert 'tritium_engine_device_available{device="1"} 1.0' in metrics
    # Every later request runs on device 1 and still gives the same text, also after a hot swap of
    # device 1's process for a new one of the same package (new sequences start on the new process).
    assert asyncio.run(_run_streams(base)) == alone
    old_pid = _plugins(admin)["cpu@1"].pid
    swapped = admin.ReplacePlugin(pb.ReplacePluginRequest(
        name="cpu@1", path=str(REPO / "plugins" / "backend_cpu")), timeout=300)
    assert swapped.plugin.name == "cpu@1" and swapped.plugin.pid != old_pid
    assert asyncio.run(_run_streams(base)) == alone
    with pytest.raises(grpc.RpcError) as err:
        admin.RemovePlugin(pb.RemovePluginRequest(name="cpu@1"), timeout=30)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "last" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        admin.RemovePlugin(pb.RemovePluginRequest(name="nope@3"), timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
