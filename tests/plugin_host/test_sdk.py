"""SDK pieces that need no plugin process: shared-memory tensors, config defaults, run-by-hand refusal,
and the builtin scheduler's policies."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from tritium.plugins.scheduler_basic.policies import SchedulerState, schedule
from tritium.protos.tritium.plugin.v1 import common_pb2, scheduler_pb2
from tritium.sdk import config, shm


def test_segment_round_trip_between_owner_and_reader():
    arena = shm.Arena(4096, "test")
    try:
        view, handle = arena.alloc(np.float32, (3, 5))
        view[...] = np.arange(15, dtype=np.float32).reshape(3, 5)
        _, h2 = arena.alloc(np.int32, (7,))
        assert h2.offset % shm.ALIGNMENT == 0 and h2.offset >= handle.nbytes
        cache = shm.SegmentCache()
        got = shm.read_tensor(handle, cache, dtype=common_pb2.DTYPE_F32, shape=(3, None))
        np.testing.assert_array_equal(got, view)
        view[0, 0] = 42  # a copy was returned, a view would follow the writer
        assert got[0, 0] == 0 and shm.read_tensor(handle, cache, copy=False)[0, 0] == 42
        cache.close()
    finally:
        arena.close()
    assert not arena.segment.path.exists()


def test_inline_handles():
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    np.testing.assert_array_equal(shm.read_tensor(shm.inline_handle(a)), a)


@pytest.mark.parametrize(
    ("mutate", "kw", "needle"),
    [
        (lambda h: setattr(h, "nbytes", 7), {}, "nbytes 7 does not match"),
        (lambda h: None, {"dtype": common_pb2.DTYPE_F16}, "expected dtype DTYPE_F16, found DTYPE_F32"),
        (lambda h: None, {"shape": (2, 2)}, "expected shape [2, 2], found [3, 5]"),
        (
            lambda h: (h.ClearField("shape"), h.shape.extend([3000, 5]), setattr(h, "nbytes", 60000)),
            {},
            "does not fit segment",
        ),
        (lambda h: setattr(h, "segment", "tritium-0-nonexistent"), {}, "does not exist"),
        (lambda h: setattr(h, "dtype", 99), {}, "unsupported dtype"),
    ],
)
def test_bad_handles_are_rejected(mutate, kw, needle):
    arena = shm.Arena(1024, "test")
    try:
        _, handle = arena.alloc(np.float32, (3, 5))
        mutate(handle)
        with pytest.raises(shm.TensorHandleError) as err:
            shm.read_tensor(handle, shm.SegmentCache(), what="logits", **kw)
        assert needle in str(err.value)
    finally:
        arena.close()


def test_remove_segments_of_a_dead_process():
    seg = shm.Segment.create(64, "orphan")
    seg.owner = False  # pretend its creator died without cleaning up
    seg.close()
    import os

    assert seg.name in shm.remove_segments_of(os.getpid())
    assert not seg.path.exists()


def test_config_defaults_are_the_seed_tables():
    b = config.with_defaults(common_pb2.BackendConfig())
    assert (b.backend, b.device_id, b.memory_limit, b.stream_count, b.tensor_cores) == ("auto", 0, 0, 1, True)
    s = config.with_defaults(common_pb2.SchedulerConfig())
    assert (s.scheduler_type, s.max_batch_size, s.preempt_enabled, s.device_affinity) == (
        "load_aware",
        32,
        False,
        "auto",
    )
    assert s.load_threshold == pytest.approx(0.8)
    q = config.with_defaults(common_pb2.QuantizerConfig())
    assert (q.quant_type, q.group_size, q.sym, q.per_channel, q.quant_embd) == (
        common_pb2.QUANT_TYPE_I2_S,
        32,
        True,
        False,
        False,
    )
    # An explicit false is kept, not replaced by the default.
    assert config.with_defaults(common_pb2.BackendConfig(tensor_cores=False)).tensor_cores is False


@pytest.mark.parametrize(
    ("msg", "needle"),
    [
        (common_pb2.SchedulerConfig(scheduler_type="fastest"), "scheduler_type 'fastest' is not one of"),
        (common_pb2.SchedulerConfig(load_threshold=1.5), "load_threshold must be in (0, 1]"),
        (common_pb2.SchedulerConfig(device_affinity="gpu0"), "device_affinity must be 'auto'"),
        (common_pb2.BackendConfig(stream_count=0), "stream_count must be > 0"),
        (common_pb2.QuantizerConfig(group_size=0), "group_size must be > 0"),
    ],
)
def test_config_validation_names_the_field(msg, needle):
    with pytest.raises(config.ConfigError) as err:
        config.validate(msg)
    assert needle in str(err.value)


def test_plugin_run_by_hand_explains_itself_and_exits():
    proc = subprocess.run(
        [sys.executable, "-m", "tritium.plugins.scheduler_basic"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1
    assert "not meant to be run by hand" in proc.stderr and 'scheduler "basic"' in proc.stderr
    assert proc.stdout == ""


def _req(queue, devices=(), max_tokens=0):
    return scheduler_pb2.ScheduleRequest(
        step_id=9, queue=queue, devices=list(devices), max_batch_tokens=max_tokens
    )


def _dev(i, load=0.0, cap=8, running=0):
    return scheduler_pb2.DeviceLoad(device_id=i, load=load, capacity=cap, running=running, available=True)


def test_running_requests_decode_and_waiting_ones_prefill_in_order():
    st = SchedulerState(config.validate(common_pb2.SchedulerConfig(max_batch_size=3)))
    q = [
        scheduler_pb2.QueuedRequest(
            request_id=1, running=True, device_id=0, prompt_tokens=4, processed_tokens=6
        ),
        scheduler_pb2.QueuedRequest(request_id=2, prompt_tokens=10, arrival_us=5),
        scheduler_pb2.QueuedRequest(request_id=3, prompt_tokens=7, arrival_us=1),
        scheduler_pb2.QueuedRequest(request_id=4, prompt_tokens=7, arrival_us=9),
    ]
    r = schedule(st, _req(q, [_dev(0)], max_tokens=12))
    assert r.step_id == 9
    assert [(a.request_id, a.device_id, a.tokens) for a in r.batch] == [(1, 0, 1), (3, 0, 7), (2, 0, 4)]


def test_load_aware_places_on_least_loaded_device_under_threshold():
    st = SchedulerState(config.validate(common_pb2.SchedulerConfig(load_threshold=0.5)))
    q = [scheduler_pb2.QueuedRequest(request_id=i, prompt_tokens=3, arrival_us=i) for i in range(1, 4)]
    r = schedule(st, _req(q, [_dev(0, load=0.9), _dev(1, load=0.1, cap=4), _dev(2, load=0.2, cap=4)]))
    # 1 -> dev1 (0.10), 2 -> dev2 (0.20 < 0.35), 3 -> dev1 (0.35 < 0.45); device 0 is over the threshold.
    assert [(a.request_id, a.device_id) for a in r.batch] == [(1, 1), (2, 2), (3, 1)]


def test_round_robin_cycles_and_affinity_restricts():
    st = SchedulerState(
        config.validate(common_pb2.SchedulerConfig(scheduler_type="round_robin", device_affinity="1,2"))
    )
    q = [scheduler_pb2.QueuedRequest(request_id=i, prompt_tokens=1, arrival_us=i) for i in range(1, 5)]
    r = schedule(st, _req(q, [_dev(0), _dev(1), _dev(2)]))
    assert [a.device_id for a in r.batch] == [1, 2, 1, 2]


def test_preemption_only_when_enabled():
    q = [
        scheduler_pb2.QueuedRequest(request_id=1, running=True, priority=0, arrival_us=1),
        scheduler_pb2.QueuedRequest(request_id=2, priority=5, prompt_tokens=2, arrival_us=2),
    ]
    off = SchedulerState(config.validate(common_pb2.SchedulerConfig(max_batch_size=1)))
    assert list(schedule(off, _req(q, [_dev(0)])).preempt) == []
    on = SchedulerState(config.validate(common_pb2.SchedulerConfig(max_batch_size=1, preempt_enabled=True)))
    r = schedule(on, _req(q, [_dev(0)]))
    assert list(r.preempt) == [1] and [a.request_id for a in r.batch] == [2]


# ---- sdk.sampling: the sampled continuation's wire forms -------------------------------------------
def test_a_generator_continues_across_its_wire_state():
    import numpy as np
    from tritium.core.sampling import Sampler, SamplingParams
    from tritium.protos.tritium.plugin.v1 import backend_pb2
    from tritium.sdk.sampling import (
        continuation_sampling,
        generator_from,
        rng_state,
        sampler_of,
        set_rng_state,
    )

    host = np.random.default_rng(2**70 + 3)  # a seed wider than 64 bits: both halves matter
    host.random()
    host.integers(0, 10, dtype=np.uint32)  # leaves a buffered 32-bit half-draw (has_uint32)
    twin = np.random.default_rng(2**70 + 3)
    twin.random()
    twin.integers(0, 10, dtype=np.uint32)
    msg = backend_pb2.Pcg64State.FromString(rng_state(host).SerializeToString())
    plugin = generator_from(msg)
    assert [plugin.random() for _ in range(5)] == [twin.random() for _ in range(5)]
    set_rng_state(host, rng_state(plugin))  # the host continues after the plugin's draws
    draws = [g.integers(0, 2**32, 4, dtype=np.uint32).tolist() for g in (host, twin)]
    assert draws[0] == draws[1]

    params = SamplingParams(temperature=0.7, top_k=5, top_p=0.9, min_p=0.05, repetition_penalty=1.1,
                            penalty_last_n=3, frequency_penalty=0.2, logprobs=2, seed=9)
    history, n_prompt = [5, 6, 7, 8, 1], 4  # four prompt tokens, one generated
    sent = continuation_sampling(Sampler(params).continuation(history, n_prompt))
    assert list(sent.prompt_tail) == [7, 8] and list(sent.generated) == [1]  # the window of 3, no more
    plugin_sampler, plugin_history, plugin_n_prompt = sampler_of(sent)
    got = plugin_sampler.params
    assert (got.temperature, got.top_p, got.min_p, got.repetition_penalty, got.logprobs) == (
        0.7, 0.9, 0.05, 1.1, 2)  # doubles: exact
    row = np.linspace(-2, 2, 50, dtype=np.float32)
    want = Sampler(params).choose(row, history, n_prompt=n_prompt)
    assert plugin_sampler.choose(row, plugin_history, n_prompt=plugin_n_prompt) == want
    with pytest.raises(ValueError, match="PCG64"):
        rng_state(np.random.Generator(np.random.MT19937(1)))
