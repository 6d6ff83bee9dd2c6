"""``/metrics``: Prometheus counters of deliveries and runs, scraped from a live daemon."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import (
    REPOSITORY,
    Daemon,
    Repos,
    basic_auth,
    deliver_push,
    free_port,
    git,
    http,
    push_payload,
    signed,
    start_daemon,
    write_config,
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
                 event="-", status="404") == 1  # an unknown target is "-", and so is
    # the event an unverified request claims
    assert value(after, "deployhook_runs_total", target="default", outcome="ok") == 1
    assert value(after, "deployhook_runs_total", target="default", outcome="failed") == 0
    assert value(after, "deployhook_run_duration_seconds_count", target="default") == 1
    assert value(after, "deployhook_run_duration_seconds_bucket", target="default",
                 le="+Inf") == 1
    assert value(after, "deployhook_last_success_timestamp_seconds", target="default") > 0
    assert value(after, "deployhook_runs_waiting", target="default") == 0
    labels = {dict(key[1]).get("target") for key in after}
    assert labels <= {None, "default", "-"}


def test_each_target_has_its_runs_and_outcomes(repos: Repos, secret_file: Path) -> None:
    """Two targets: a deploy of one and a failed run of the other (origin gone) land in
    their own series; the served OpenAPI document names both targets."""
    docs = repos.root / "docs-checkout"
    git(repos.root, "clone", "-q", "--recurse-submodules", str(repos.origin), str(docs))
    port = free_port()
    config = write_config(
        repos.root / "config.py", port=port, secret_file=str(secret_file),
        targets={"site": {"repo_path": str(repos.deployed), "repository": REPOSITORY},
                 "docs": {"repo_path": str(docs), "repository": REPOSITORY}}, reload="none")
    daemon = Daemon(config, port)
    try:
        daemon.wait_ready()
        sha = repos.commit()
        body, headers = signed(push_payload(sha), delivery="m-1")
        assert http("POST", daemon.url + "/hooks/site", body, headers)[0] == 200
        gone = repos.origin.with_name("origin-gone.git")
        repos.origin.rename(gone)
        try:
            body, headers = signed(push_payload(sha), delivery="m-2")
            assert http("POST", daemon.url + "/hooks/docs", body, headers)[0] == 500
        finally:
            gone.rename(repos.origin)
        samples = scrape(daemon)
        status, doc = http("GET", daemon.url + "/openapi.json")
    finally:
        daemon.stop()
    assert value(samples, "deployhook_runs_total", target="site", outcome="ok") == 1
    assert value(samples, "deployhook_runs_total", target="docs", outcome="failed") == 1
    assert value(samples, "deployhook_runs_total", target="docs", outcome="ok") == 0
    assert value(samples, "deployhook_deliveries_total", target="docs", forge="github",
                 event="push", status="500") == 1
    assert value(samples, "deployhook_last_success_timestamp_seconds", target="site") > 0
    assert ("deployhook_last_success_timestamp_seconds",
            frozenset({("target", "docs")})) not in samples
    target = doc["paths"]["/hooks/{target}"]["parameters"][0]["schema"]
    assert status == 200 and target["enum"] == ["site", "docs"]


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
