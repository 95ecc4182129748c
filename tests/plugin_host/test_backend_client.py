"""BackendClient against the shipped toy backend: no accepted step is lost when the backend dies,
is replaced, or falls back; wrong tensors are protocol errors naming the plugin."""

from __future__ import annotations

import glob
import os
import signal
import threading
import time

import numpy as np
import pytest
from tritium.core.sampling import Sampler, SamplingParams
from tritium.plugin_host.client import BackendClient
from tritium.plugin_host.errors import PluginProtocolError
from tritium.plugin_host.supervisor import PluginState, RestartPolicy, Supervisor
from tritium.sdk.packaging import write_manifest

POLICY = RestartPolicy(max_crashes=4, backoff_initial_s=0.01, backoff_max_s=0.05, call_attempts=4)
PROMPT = [3, 1, 4, 1, 5]


@pytest.fixture(scope="module")
def sup():
    s = Supervisor(policy=POLICY)
    yield s
    s.close()


@pytest.fixture(scope="module")
def toy(sup, make_package):
    m = make_package("toy_backend", name="toy")
    sup.register(m)
    sup.start("toy")
    return m


def _generate(client, n, kill_at=None, sup=None, plugin="toy", prompts=(PROMPT,)):
    """Greedy decode n tokens for each prompt as one batch per step; optionally SIGKILL the backend
    right before step `kill_at`."""
    seqs = [client.new_sequence() for _ in prompts]
    logits = client.step(list(zip(seqs, [list(p) for p in prompts], strict=True)))
    out = [[] for _ in prompts]
    for i in range(n):
        toks = [int(lg[-1].argmax()) for lg in logits]
        for o, t in zip(out, toks, strict=True):
            o.append(t)
        if kill_at is not None and i == kill_at:
            os.kill(sup.get(plugin).instance.pid, signal.SIGKILL)
        logits = client.step([(s, [t]) for s, t in zip(seqs, toks, strict=True)])
    client.release(*seqs)
    return out


def test_sigkill_mid_generation_gives_the_undisturbed_tokens(sup, toy):
    client = BackendClient(sup, "toy")
    client.load_model("/models/toy.gguf")
    prompts = (PROMPT, [9, 9, 2], [7])
    reference = _generate(client, 12, prompts=prompts)
    restarts = sup.get("toy").restarts
    old = sup.get("toy").instance
    assert glob.glob(f"/dev/shm/tritium-{old.pid}-*")  # its logits segment
    disturbed = _generate(client, 12, kill_at=5, sup=sup, prompts=prompts)
    assert disturbed == reference
    assert sup.get("toy").restarts == restarts + 1 and client.restores >= 1
    # What the killed process could not clean up, the host did.
    assert not glob.glob(f"/dev/shm/tritium-{old.pid}-*")
    assert not os.path.exists(os.path.dirname(old.process.handshake.address))
    # Depends on history: a backend that lost the KV state without replay would diverge.
    assert len({tuple(r) for r in reference}) == 3


def test_sigkill_while_a_step_is_running(sup, make_package):
    m = make_package("toy_backend", name="slowtoy")
    os.environ["TOY_STEP_DELAY_S"] = "0.3"
    try:
        sup.register(m)
        sup.start("slowtoy")
    finally:
        del os.environ["TOY_STEP_DELAY_S"]
    client = BackendClient(sup, "slowtoy")
    client.load_model("/models/toy.gguf")
    seq = client.new_sequence()
    reference = client.eval(seq, PROMPT, all_logits=True)
    client.truncate(seq, 0)
    pid = sup.get("slowtoy").instance.pid
    threading.Timer(0.15, os.kill, (pid, signal.SIGKILL)).start()  # lands inside the 0.3 s step
    t0 = time.monotonic()
    again = client.eval(seq, PROMPT, all_logits=True)
    assert time.monotonic() - t0 < 10
    np.testing.assert_array_equal(again, reference)
    assert sup.get("slowtoy").instance.pid != pid and client.n_past(seq) == len(PROMPT)
    sup.stop("slowtoy", drain=False)


def test_truncate_rewinds_the_plugin_sequence(sup, toy):
    client = BackendClient(sup, "toy")
    client.load_model("/models/toy.gguf")
    seq = client.new_sequence()
    first = client.eval(seq, PROMPT + [8])
    client.truncate(seq, len(PROMPT))
    assert client.n_past(seq) == len(PROMPT)
    np.testing.assert_array_equal(client.eval(seq, [8]), first)


def test_hot_replace_in_flight_finish_on_the_old_new_start_on_the_new(sup, make_package, tmp_path):
    toy = make_package("toy_backend", name="swap")
    sup.register(toy)
    sup.start("swap")
    client = BackendClient(sup, "swap")
    client.load_model("/models/toy.gguf")
    reference = _generate(client, 8, plugin="swap")
    seq = client.new_sequence()
    logits = client.eval(seq, PROMPT)
    out = []
    old = sup.get("swap").instance
    newcomer = None
    for i in range(8):
        t = int(logits[-1].argmax())
        out.append(t)
        if i == 3:  # replace with a new version of the package while the sequence is running
            pkg = tmp_path / "toy2"
            pkg.mkdir()
            (pkg / "plugin_main.py").write_bytes((toy.root / "plugin_main.py").read_bytes())
            write_manifest(
                pkg,
                name="swap",
                kind="backend",
                version="0.2.0",
                entry=["{python}", "plugin_main.py", "toy_backend", "0.2.0"],
            )
            sup.replace("swap", pkg)
            newcomer = client.new_sequence()
            client.eval(newcomer, PROMPT)
        logits = client.eval(seq, [t])
    new = sup.get("swap").instance
    assert [out] == reference
    assert new.pid != old.pid and sup.get("swap").manifest.version == "0.2.0"
    assert client.instance_of(seq) == old.key  # the request in flight finished on the old process
    assert client.instance_of(newcomer) == new.key  # the new one started on the new process
    assert old.process.alive()  # kept alive by the running sequence's lease
    client.release(seq, newcomer)
    assert old.process.process.wait(timeout=10) == 0  # then drained and exited cleanly


def test_fallback_backend_takes_over_when_the_circuit_opens(sup, make_package):
    primary = make_package("toy_backend", name="primary")
    spare = make_package("toy_backend", name="spare")
    sup.register(primary, fallback="spare")
    sup.register(spare)
    sup.start("primary")
    client = BackendClient(sup, "primary")
    client.load_model("/models/toy.gguf")
    seq = client.new_sequence()
    ref = client.eval(seq, PROMPT)
    client.truncate(seq, 0)
    client.eval(seq, PROMPT[:2])
    for _ in range(POLICY.max_crashes):
        mp = sup.get("primary")
        if mp.state == PluginState.FAILED:
            break
        assert sup.wait_for("primary", lambda p: p.state in (PluginState.READY, PluginState.FAILED), 10)
        if mp.instance is not None:
            os.kill(mp.instance.pid, signal.SIGKILL)
            sup.wait_for("primary", lambda p, i=mp.instance: p.instance is not i, 10)
    assert sup.wait_for("primary", lambda p: p.state == PluginState.FAILED, 10)
    np.testing.assert_array_equal(client.eval(seq, PROMPT[2:]), ref)
    assert sup.get("spare").state == PluginState.READY


def _plain_step(client, seq):
    return client.eval(seq, PROMPT)


def _greedy_step(client, seq):
    return client.step_continue([(seq, PROMPT)], [3], ())


def _sampled_step(client, seq):
    sampler = Sampler(SamplingParams(temperature=0.7, seed=1))
    return client.step_continue([(seq, PROMPT)], [3], (), [sampler.continuation(PROMPT, len(PROMPT))])


@pytest.mark.parametrize(
    ("mode", "needle", "call"),
    [
        ("backend_wrong_shape", "expected shape [1, 50], found [2, 50]", _plain_step),
        ("backend_wrong_dtype", "expected dtype DTYPE_F32, found DTYPE_F16", _plain_step),
        ("backend_greedy_overrun", "4 greedy tokens, at most 3 asked", _greedy_step),
        ("backend_sampled_no_rng", "a sampled continuation without its generator state", _sampled_step),
    ],
)
def test_wrong_answers_are_protocol_errors_and_restart_the_plugin(sup, make_package, mode, needle, call):
    m = make_package(mode)
    sup.register(m)
    pid = sup.start(m.name).pid
    client = BackendClient(sup, m.name)
    client.load_model("/models/toy.gguf")
    seq = client.new_sequence()
    with pytest.raises(PluginProtocolError) as err:
        call(client, seq)
    assert (
        needle in str(err.value) and f"plugin {m.name!r}" in str(err.value) and "sequence" in str(err.value)
    )
    assert sup.wait_for(m.name, lambda p: p.instance is not None and p.instance.pid != pid, 10)
    assert client.n_past(seq) == 0  # the failed step was not committed
    sup.stop(m.name, drain=False)


def test_greedy_steps_on_a_backend_without_the_capability_are_plain_steps(sup, toy):
    client = BackendClient(sup, "toy")
    client.load_model("/models/toy.gguf")
    seq = client.new_sequence()
    [(tokens, logits)] = client.step_continue([(seq, PROMPT)], [5], ())
    assert tokens == [] and client.n_past(seq) == len(PROMPT)  # the caller samples every token itself
    np.testing.assert_array_equal(logits, client.eval(client.new_sequence(), PROMPT))



def test_sampled_steps_on_a_backend_with_greedy_steps_only_are_plain_steps(sup, make_package):
    m = make_package("backend_greedy_overrun")  # greedy_steps but not sampled_steps
    sup.register(m)
    sup.start(m.name)
    client = BackendClient(sup, m.name)
    client.load_model("/models/toy.gguf")
    sampler = Sampler(SamplingParams(temperature=0.7, seed=4))
    before = sampler.rng.bit_generator.state
    [(tokens, _)] = client.step_continue([(client.new_sequence(), PROMPT)], [5], (),
                                       [sampler.continuation(PROMPT, len(PROMPT))])
    assert tokens == [] and sampler.rng.bit_generator.state == before  # the caller samples itself
    sup.stop(m.name, drain=False)
