"""Plugin metrics for Prometheus: what the host knows about each plugin (up, state, restarts) and what
each ready plugin reports through Plugin.Metrics, re-exported as `tritium_plugin_<name>` with `plugin`
and `kind` labels. Register once: `prometheus_client.REGISTRY.register(PluginMetricsCollector(sup))`.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from tritium.protos.tritium.plugin.v1 import common_pb2, common_pb2_grpc

from .security_events import SecurityMetricsCollector
from .supervisor import PluginState, Supervisor

PREFIX = "tritium_plugin_"


class PluginMetricsCollector:
    """A prometheus_client collector over a Supervisor. A plugin that does not answer its Metrics call
    within timeout_s is skipped for that scrape (and counted in tritium_plugin_scrape_errors)."""

    def __init__(self, supervisor: Supervisor, *, timeout_s: float = 0.5) -> None:
        self._sup = supervisor
        self._timeout = timeout_s
        self.scrape_errors = 0

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families of one scrape."""
        rows = self._sup.status()
        up = GaugeMetricFamily(
            PREFIX + "up", "1 if the plugin is ready to take calls", labels=["plugin", "kind"]
        )
        state = GaugeMetricFamily(
            PREFIX + "state", "1 for the plugin's current lifecycle state", labels=["plugin", "kind", "state"]
        )
        restarts = CounterMetricFamily(
            PREFIX + "restarts", "Restarts after crashes", labels=["plugin", "kind"]
        )
        for r in rows:
            labels = [str(r["name"]), str(r["kind"])]
            up.add_metric(labels, 1.0 if r["state"] == PluginState.READY else 0.0)
            state.add_metric([*labels, str(r["state"])], 1.0)
            restarts.add_metric(labels, float(r["restarts"]))
        yield up
        yield state
        yield restarts

        samples: dict[str, tuple[str, str, list[tuple[dict[str, str], float]]]] = {}
        for r in rows:
            if r["state"] != PluginState.READY:
                continue
            try:
                inst = self._sup.instance(str(r["name"]), wait_s=0)
                reply = inst.stub(common_pb2_grpc.PluginStub).Metrics(
                    common_pb2.MetricsRequest(), timeout=self._timeout
                )
            except Exception:  # one plugin (RpcError, closed channel...) must never fail a scrape
                self.scrape_errors += 1
                continue
            for m in reply.metrics:
                kind = "counter" if m.type == "counter" else "gauge"
                name = PREFIX + (
                    m.name[: -len("_total")] if kind == "counter" and m.name.endswith("_total") else m.name
                )
                labels = {"plugin": str(r["name"]), "kind": str(r["kind"]), **dict(m.labels)}
                samples.setdefault(name, (kind, m.help, []))[2].append((labels, m.value))
        for name, (kind, help_text, values) in sorted(samples.items()):
            keys = sorted({k for labels, _ in values for k in labels})
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                name, help_text, labels=keys
            )
            for labels, value in values:
                family.add_metric([labels.get(k, "") for k in keys], value)
            yield family
        errors = CounterMetricFamily(
            PREFIX + "scrape_errors", "Plugin Metrics calls that failed during scrapes"
        )
        errors.add_metric([], float(self.scrape_errors))
        yield errors
        # Plugins refused (signature, sandbox) or stopped (limits, crashes), by reason: security_events.
        yield from SecurityMetricsCollector().collect()
