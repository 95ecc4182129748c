"""Counts of plugins refused or stopped for security reasons, by plugin and reason, for Prometheus.

    tritium_plugin_security_events_total{plugin="x", event="rejected", reason="tampered"} 1

`record()` is called where the decision is made (signature check, sandbox setup, supervisor crash
handling); `SecurityMetricsCollector` exports the counts. Register it once:
`prometheus_client.REGISTRY.register(SecurityMetricsCollector())`.
"""

from __future__ import annotations

import collections
import logging
import signal
import threading
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

log = logging.getLogger("tritium.plugin_host.security")

_lock = threading.Lock()
_counts: collections.Counter[tuple[str, str, str]] = collections.Counter()


def record(plugin: str, event: str, reason: str, detail: str = "", *, level: int = logging.WARNING) -> None:
    """Count one security event and log it. `event` is `rejected`, `stopped`, `unsigned_allowed`,
    or `blocked` / `blocked_at_start` (a call the sandbox refused inside the plugin; `reason` is
    the syscall)."""
    with _lock:
        _counts[(plugin, event, reason)] += 1
    log.log(level, "security: plugin %s %s (%s)%s", plugin, event, reason, f": {detail}" if detail else "")


def counts() -> dict[tuple[str, str, str], int]:
    """A snapshot of the counts by (plugin, event, reason)."""
    with _lock:
        return dict(_counts)


def reset() -> None:
    """Forget every count (tests)."""
    with _lock:
        _counts.clear()


class SecurityMetricsCollector:
    """prometheus_client collector of the security event counts."""

    def collect(self) -> Iterator[Metric]:
        """Yield the one counter family."""
        family = CounterMetricFamily(
            "tritium_plugin_security_events",
            "Plugins refused (signature, sandbox) or stopped (limits, crashes) by reason",
            labels=["plugin", "event", "reason"],
        )
        for (plugin, event, reason), n in sorted(counts().items()):
            family.add_metric([plugin, event, reason], float(n))
        yield family


_SIGNAL_REASONS = {
    signal.SIGSYS: "seccomp_violation",
    signal.SIGXCPU: "cpu_limit",
    signal.SIGXFSZ: "file_size_limit",
    signal.SIGSEGV: "segfault",
    signal.SIGBUS: "bus_error",
    signal.SIGABRT: "abort",
    signal.SIGILL: "illegal_instruction",
}
_FAULT_REASONS = (
    ("deadline", "hung"),
    ("message limit", "oversized_message"),
    ("not a valid protobuf", "malformed_message"),
    ("health check", "unresponsive"),
)


def exit_reason(status: int, fault_reason: str = "") -> str:
    """A stable label for how a plugin process ended: its exit status (negative: killed by that
    signal) and, when the host killed it, the host's reason."""
    for needle, label in _FAULT_REASONS:
        if needle in fault_reason:
            return label
    if status < 0:
        try:
            sig = signal.Signals(-status)
        except ValueError:
            return f"signal_{-status}"
        return _SIGNAL_REASONS.get(sig, f"signal_{sig.name}")
    if status == 121:
        return "sandbox_unavailable"
    if status == 120:
        return "out_of_memory"  # CPython's exit status for a MemoryError during shutdown
    return f"exit_{status}"


def record_exit(plugin: str, status: int, fault_reason: str = "") -> str:
    """Count an unexpected end of a plugin process (event `stopped`); returns the reason label."""
    reason = exit_reason(status, fault_reason)
    record(plugin, "stopped", reason, fault_reason or f"exit status {status}")
    return reason
