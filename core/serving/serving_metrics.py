"""Prometheus metrics of the serving engine, and the registry `/metrics` exposes.

Engine metrics are read from the engine's counters at scrape time (nothing on the step's hot path):
queue depth, running requests, totals, recent generated tokens per second, step latency quantiles
over the last 1000 steps, and per-device running sequences / step time / availability. With plugins,
the registry also carries `PluginMetricsCollector` (up, state, restarts and each plugin's own metrics)
and the scheduler client's call time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

PREFIX = "tritium_engine_"
RATE_WINDOW_S = 10.0


class EngineMetricsCollector:
    """A prometheus_client collector over a ServingEngine."""

    def __init__(self, engine: Any, scheduler: Any = None, fallback: Any = None) -> None:
        self._engine = engine
        self._scheduler = scheduler  # a SchedulerClient (calls, seconds) or None
        self._fallback = fallback  # a FallbackPolicy (fallbacks) or None

    def _tokens_per_second(self, now: float) -> float:
        marks = [m for m in list(self._engine.counters.token_marks) if now - m[0] <= RATE_WINDOW_S]
        if len(marks) < 2:
            return 0.0
        return (marks[-1][1] - marks[0][1]) / max(now - marks[0][0], 1e-3)

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families of one scrape."""
        e = self._engine
        load = e.load()
        c = e.counters

        def gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(PREFIX + name, help_text)
            g.add_metric([], float(value))
            return g

        def counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
            m = CounterMetricFamily(PREFIX + name, help_text)
            m.add_metric([], float(value))
            return m

        yield gauge("queue_depth", "Requests waiting for a KV cache (admission queue)", load["waiting"])
        yield gauge("running", "Requests holding a KV cache", load["running"])
        yield counter("steps", "Engine steps run", c.steps)
        yield counter("tokens_generated", "Tokens sampled", c.tokens_generated)
        yield counter("tokens_fed", "Tokens fed to the model (prompt, decode and recompute)", c.tokens_fed)
        yield counter("continuation_tokens",
                      "Tokens the backend chose itself in continuations (config decode_steps)",
                      c.continued_tokens)
        yield counter("requests_finished", "Requests finished", c.finished)
        yield counter("requests_cancelled", "Requests cancelled", c.cancelled)
        yield counter("preemptions", "Requests preempted (their KV cache freed, recomputed later)",
                      c.preemptions)
        yield gauge("tokens_per_second", f"Tokens generated per second over the last {RATE_WINDOW_S:.0f} s",
                    self._tokens_per_second(time.monotonic()))
        steps = np.array(list(c.step_seconds), dtype=np.float64)
        q = GaugeMetricFamily(PREFIX + "step_latency_seconds",
                              "Engine step wall time over the last 1000 steps", labels=["quantile"])
        for quantile in (0.5, 0.9, 0.99):
            q.add_metric([str(quantile)], float(np.quantile(steps, quantile)) if steps.size else 0.0)
        yield q
        sizes = list(c.step_sizes)
        yield gauge("batch_size_mean", "Mean sequences per step over the last 1000 steps",
                    float(np.mean(sizes)) if sizes else 0.0)
        running = GaugeMetricFamily(PREFIX + "device_running", "Sequences running on each device",
                                    labels=["device"])
        step_s = GaugeMetricFamily(PREFIX + "device_step_seconds", "Recent step time of each device (EMA)",
                                   labels=["device"])
        avail = GaugeMetricFamily(PREFIX + "device_available", "1 if the device takes new work",
                                  labels=["device"])
        for d in e.devices():
            running.add_metric([str(d["device"])], float(d["running"]))
            step_s.add_metric([str(d["device"])], d["step_us"] / 1e6)
            avail.add_metric([str(d["device"])], 1.0 if d["available"] else 0.0)
        yield running
        yield step_s
        yield avail
        if self._scheduler is not None:
            yield CounterMetricFamily("tritium_scheduler_calls", "Schedule calls to the scheduler plugin",
                                      value=float(self._scheduler.calls))
            yield CounterMetricFamily("tritium_scheduler_call_seconds", "Time spent in Schedule calls",
                                      value=float(self._scheduler.seconds))
        if self._fallback is not None:
            yield CounterMetricFamily("tritium_scheduler_fallbacks",
                                      "Steps placed in-core because the scheduler plugin failed",
                                      value=float(self._fallback.fallbacks))


def metrics_registry(engine: Any, stack: Any = None) -> CollectorRegistry:
    """A registry with the engine's metrics and, when the server runs plugins, the plugins' metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineMetricsCollector(engine, getattr(stack, "scheduler", None),
                                             getattr(stack, "policy", None)))
    if stack is not None:
        from tritium.plugin_host.metrics import PluginMetricsCollector

        registry.register(PluginMetricsCollector(stack))
    return registry
