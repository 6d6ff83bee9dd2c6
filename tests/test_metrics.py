"""``/metrics``: Prometheus counters of deliveries and runs, scraped from a live daemon."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import (
    Daemon,
    Repos,
    basic_auth,
    deliver_push,
    http,
    push_payload,
    signed,
    start_daemon,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(daemon: Daemon) -> Samples:
    """Every sample of ``/metrics``, by (name, labels)."""
    request = urllib.request.Request(daemon.url + "/metrics", headers=basic_auth())
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_a_push_moves_the_delivery_and_run_counters(repos: Repos, secret_file: Path) -> None:
    daemon = start_daemon(repos, secret_file)
    try:
        daemon.wait_ready()
        before = scrape(daemon)
        assert value(before, "deployhook_runs_total", target="default", outcome="ok") == 0
        assert ("deployhook_last_success_timestamp_seconds",
                frozenset({("target", "default")})) not in before

        assert deliver_push(daemon.url, repos.commit())[0] == 200
        body, headers = signed(push_payload(repos.commit()), event="star-" * 20)
        assert http("POST", daemon.url + "/github", body, headers)[0] == 202
        body, headers = signed(push_payload(repos.commit()), event="push")
        assert http("POST", daemon.url + "/hooks/no-such-target", body, headers)[0] == 404
        after = scrape(daemon)
    finally:
        daemon.stop()
    push = {"target": "default", "forge": "github", "event": "push"}
    assert value(after, "deployhook_deliveries_total", **push, status="200") == \
        value(before, "deployhook_deliveries_total", **push, status="200") + 1
    assert value(after, "deployhook_deliveries_total", target="default", forge="github",
                 event="other", status="202") == 1  # an unknown event is "other"
    assert value(after, "deployhook_deliveries_total", target="-", forge="github",
                 event="push", status="404") == 1  # an unknown target is "-"
    assert value(after, "deployhook_runs_total", target="default", outcome="ok") == 1
    assert value(after, "deployhook_runs_total", target="default", outcome="failed") == 0
    assert value(after, "deployhook_run_duration_seconds_count", target="default") == 1
    assert value(after, "deployhook_run_duration_seconds_bucket", target="default",
                 le="+Inf") == 1
    assert value(after, "deployhook_last_success_timestamp_seconds", target="default") > 0
    assert value(after, "deployhook_runs_waiting", target="default") == 0
    labels = {dict(key[1]).get("target") for key in after}
    assert labels <= {None, "default", "-"}


def test_metrics_need_the_api_login(repos: Repos, secret_file: Path) -> None:
    daemon = start_daemon(repos, secret_file)
    try:
        daemon.wait_ready()
        request = urllib.request.Request(daemon.url + "/metrics")
        try:
            urllib.request.urlopen(request, timeout=30)
        except urllib.error.HTTPError as exc:
            assert exc.code == 401 and exc.headers["WWW-Authenticate"].startswith("Basic")
        else:
            raise AssertionError("/metrics answered without a login")
    finally:
        daemon.stop()


def test_prometheus_client_is_imported_only_by_a_scrape() -> None:
    """Importing the package, the daemon and the web layer loads no prometheus_client."""
    code = ("import sys, deployhook, deployhook.daemon.server, deployhook.web.app; "
            "print('prometheus_client' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "False"
