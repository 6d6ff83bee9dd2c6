"""``GET /metrics``: the daemon's numbers in Prometheus's text format.

:class:`Metrics` counts in plain Python dicts: every webhook answer (by target, forge,
event and status, through :attr:`Deliveries.answered
<deployhook.service.deliveries.Deliveries.answered>`) and every deploy run (by target
and outcome, its duration, the time of the last successful one, through
:meth:`Events.on_ran <deployhook.service.events.Events.on_ran>`).  ``prometheus_client``
is imported (off the IOLoop) only when ``/metrics`` is first fetched, and exports the
dicts through a custom collector: a daemon that is never scraped never loads it.

Label values that come from requests nobody verified are bounded: a target that does
not exist is ``-``, an unknown forge or event ``other``.  Same access rule as the API
(:class:`~deployhook.web.api.RecordAccess`).
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from deployhook.forges import FORGES
from deployhook.web.api import RecordAccess
from deployhook.web.handlers import JSONHandler

if TYPE_CHECKING:
    from deployhook.git.checkout import RunResult
    from deployhook.service.deliveries import Answer, Facts
    from deployhook.service.target import Target
    from deployhook.web.access import Access

# Every forge's event names deployhook knows (push, tag push, ping, branch creation or
# deletion); any other value of an event header is counted as "other".
EVENTS = frozenset({
    "-", "push", "ping", "create", "delete", "release", "tag_push",
    "Push Hook", "Tag Push Hook", "System Hook",
    "repo:push", "repo:refs_changed", "diagnostics:ping"})
BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
OUTCOMES = ("ok", "failed")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The counters of one daemon's ``targets`` (by name; read, never changed), kept in
    dicts until a scrape reads them; :meth:`ran` is to be subscribed to run results."""

    def __init__(self, targets: Mapping[str, Target]) -> None:
        self.targets = targets
        self.deliveries: Counter[tuple[str, str, str, str]] = Counter()
        self.runs: Counter[tuple[str, str]] = Counter()
        self.durations: dict[str, list[float]] = {}  # target -> runs per bucket (+Inf last)
        self.duration_sums: dict[str, float] = {}
        self.last_success: dict[str, float] = {}

    def delivered(self, target: str, facts: Facts, answer: Answer) -> None:
        """Count one webhook answer (the delivery service calls this once per target)."""
        self.deliveries[(self.target_label(target), forge_label(facts.forge),
                         event_label(facts.event), str(answer.status))] += 1

    def ran(self, target: Target, result: RunResult) -> None:
        """Count one finished deploy run of ``target``."""
        name = target.name
        self.runs[(name, "ok" if result.ok else "failed")] += 1
        counts = self.durations.setdefault(name, [0.0] * (len(BUCKETS) + 1))
        index = next((i for i, bound in enumerate(BUCKETS) if result.duration <= bound),
                     len(BUCKETS))
        counts[index] += 1
        self.duration_sums[name] = self.duration_sums.get(name, 0.0) + result.duration
        if result.ok:
            self.last_success[name] = time.time()

    def target_label(self, name: str) -> str:
        """``name`` when it is one of the targets, else ``-``."""
        return name if name in self.targets else "-"

    def collect(self) -> Iterator[Any]:
        """Prometheus metric families of the current values (``prometheus_client``
        must be imported: only a scrape calls this)."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )
        names = list(self.targets)
        deliveries = CounterMetricFamily(
            "deployhook_deliveries", "Webhook deliveries answered, by target, forge, "
            "event and HTTP status", labels=["target", "forge", "event", "status"])
        for labels, count in sorted(self.deliveries.items()):
            deliveries.add_metric(list(labels), count)
        yield deliveries
        runs = CounterMetricFamily("deployhook_runs", "Deploy runs finished, by target "
                                   "and outcome", labels=["target", "outcome"])
        for name in names:
            for outcome in OUTCOMES:
                runs.add_metric([name, outcome], self.runs.get((name, outcome), 0))
        yield runs
        durations = HistogramMetricFamily("deployhook_run_duration_seconds",
                                          "How long deploy runs took", labels=["target"])
        for name in names:
            counts = self.durations.get(name, [0.0] * (len(BUCKETS) + 1))
            cumulative, buckets = 0.0, []
            for bound, count in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            durations.add_metric([name], buckets, self.duration_sums.get(name, 0.0))
        yield durations
        last = GaugeMetricFamily("deployhook_last_success_timestamp_seconds",
                                 "When the last successful deploy run of this process "
                                 "ended (Unix time)", labels=["target"])
        for name in names:
            if name in self.last_success:
                last.add_metric([name], self.last_success[name])
        yield last
        waiting = GaugeMetricFamily("deployhook_runs_waiting", "Pushes accepted and "
                                    "waiting for a deploy run", labels=["target"])
        deploying = GaugeMetricFamily("deployhook_deploying", "1 while a deploy of this "
                                      "target runs or waits", labels=["target"])
        for name, target in self.targets.items():
            waiting.add_metric([name], target.worker.waiting)
            deploying.add_metric([name], 1 if target.worker.busy else 0)
        yield waiting
        yield deploying

    def render(self) -> bytes:
        """The exposition text of every metric (``prometheus_client`` imported)."""
        from prometheus_client import CollectorRegistry, generate_latest
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        return generate_latest(registry)


class _Collector:
    """A prometheus_client collector over :class:`Metrics`."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        return self.metrics.collect()


def forge_label(forge: str) -> str:
    """``forge`` when deployhook knows it, else ``other``."""
    return forge if forge in FORGES else "other"


def event_label(event: str) -> str:
    """``event`` when it is an event name deployhook knows, else ``other``."""
    return event if event in EVENTS else "other"


class MetricsHandler(RecordAccess, JSONHandler):
    """``GET /metrics``: Prometheus's text format; same access rule as the record."""

    def initialize(self, access: Access, metrics: Metrics) -> None:
        self.access, self.metrics = access, metrics

    async def get(self) -> None:
        await asyncio.get_running_loop().run_in_executor(
            None, importlib.import_module, "prometheus_client")
        body = self.metrics.render()
        self.set_header("Content-Type", CONTENT_TYPE)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)
