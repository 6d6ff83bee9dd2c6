"""The OpenAPI document (``/openapi.json``), the API page (``/docs``), and schemathesis
run against a live daemon over every endpoint the document lists."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

from deployhook.web.apidocs import DOCUMENT
from tests.helpers import (
    REPOSITORY,
    STATUS_PASSWORD,
    Daemon,
    Repos,
    basic_auth,
    deliver_push,
    free_port,
    http,
    start_daemon,
    write_config,
)
from tests.test_pages import CHROMIUM, chromium
from tests.tools import require_tool

ST_EXAMPLES = 20  # examples per operation and phase: the whole run stays well under 60 s


def fetch(url: str, auth: bool = True) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a GET, logged in unless ``auth`` is False."""
    request = urllib.request.Request(url, headers=basic_auth() if auth else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_the_packaged_document_is_openapi_3_1_and_lists_every_route() -> None:
    doc = json.loads(DOCUMENT.read_text())
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {
        "/hooks/{target}", "/github", "/health", "/deployments", "/deployments/{id}", "/",
        "/runs/{id}", "/targets/{target}", "/favicon.ico", "/openapi.json", "/docs",
        "/docs/{file}", "/metrics"}
    webhook = doc["paths"]["/hooks/{target}"]["post"]["responses"]
    assert set(webhook) == {"200", "202", "400", "401", "403", "404", "409", "413", "415",
                            "500", "503"}
    schemes = doc["components"]["securitySchemes"]
    assert schemes["statusPassword"] == {**schemes["statusPassword"], "type": "http",
                                         "scheme": "basic"}
    assert {s["name"] for s in schemes.values() if s["type"] == "apiKey"} >= {
        "X-Hub-Signature-256", "X-Gitlab-Token", "X-Gitea-Signature", "X-Hub-Signature"}


def test_openapi_json_is_served_behind_the_api_login(repos: Repos, secret_file: Path) -> None:
    running = start_daemon(repos, secret_file, webhook_path="/hook")
    try:
        running.wait_ready()
        assert http("GET", running.url + "/openapi.json", auth=False)[0] == 401
        status, doc = http("GET", running.url + "/openapi.json")
        assert status == 200
        assert "/hook" in doc["paths"] and "/github" not in doc["paths"]
        target = doc["paths"]["/hooks/{target}"]["parameters"][0]
        assert target["schema"] == {"type": "string", "enum": ["default"]}
    finally:
        running.stop()


def test_docs_page_comes_from_this_server_only(repos: Repos, secret_file: Path) -> None:
    running = start_daemon(repos, secret_file)
    try:
        running.wait_ready()
        assert fetch(running.url + "/docs", auth=False)[0] == 401
        status, headers, page = fetch(running.url + "/docs")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self';" in csp
        assert "http" not in csp and "unsafe-eval" not in csp
        sources = re.findall(rb'(?:src|href)="([^"]*)"', page)
        assert sources and all(not s.startswith((b"http", b"//")) for s in sources)
        for name in (b"docs/swagger-ui-bundle.js", b"docs/swagger-ui.css", b"docs/docs.js"):
            assert name in sources
            status, headers, body = fetch(running.url + "/" + name.decode())
            assert status == 200 and len(body) > 100, name
        assert b"SwaggerUIBundle" in fetch(running.url + "/docs/swagger-ui-bundle.js")[2]
        assert fetch(running.url + "/docs/nothing.js")[0] == 404
    finally:
        running.stop()


def test_browser_renders_the_api_page(repos: Repos, secret_file: Path, tmp_path: Path) -> None:
    """Headless Chromium opens /docs with the login in the URL: Swagger UI, loaded from
    the daemon under its Content-Security-Policy, shows every path of the document."""
    require_tool(CHROMIUM, "chromium is not installed")
    port = free_port()
    config = write_config(tmp_path / "config.py", port=port, repo_path=str(repos.deployed),
                          secret_file=str(secret_file), repository=REPOSITORY, reload="none")
    daemon = Daemon(config, port)
    try:
        daemon.wait_ready()
        url = f"http://deployhook:{quote(STATUS_PASSWORD)}@127.0.0.1:{port}/docs"
        dom = chromium(["--virtual-time-budget=15000", "--dump-dom", url],
                       tmp_path / "profile").stdout
        assert "Failed to load API definition" not in dom, dom[-3000:]
        shown = set(re.findall(r'data-path="([^"]*)"', dom))
        assert shown == set(json.loads(DOCUMENT.read_text())["paths"]), dom[-3000:]
    finally:
        daemon.stop()


def test_an_unlisted_method_answers_405_with_allow(repos: Repos, secret_file: Path) -> None:
    """RFC 9110: a 405 names the methods the resource has in ``Allow``."""
    running = start_daemon(repos, secret_file)
    try:
        running.wait_ready()
        for path, allow in (("/health", "GET"), ("/github", "GET, POST"),
                            ("/deployments", "GET"), ("/", "GET")):
            request = urllib.request.Request(running.url + path, method="DELETE",
                                             headers=basic_auth())
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(request, timeout=30)
            assert caught.value.code == 405, path
            assert caught.value.headers["Allow"] == allow, path
    finally:
        running.stop()


def test_get_of_an_unknown_target_is_404(repos: Repos, secret_file: Path) -> None:
    """The reachability check tells a wrong webhook URL (it answered 200 for any name)."""
    running = start_daemon(repos, secret_file)
    try:
        running.wait_ready()
        status, body = http("GET", running.url + "/hooks/no-such-target", auth=False)
        assert status == 404 and "no such target" in body["reason"]
        assert http("GET", running.url + "/hooks/default", auth=False)[0] == 200
    finally:
        running.stop()


def test_schemathesis_finds_no_failure_on_any_endpoint(
        repos: Repos, secret_file: Path, tmp_path: Path) -> None:
    """Every operation of the served document, every check, against a live daemon with a
    status password and one recorded run: no failure, no undocumented status, no 5xx.
    Refusals are answered at once (``refused_delay`` 0): most generated deliveries are
    refused, and the delay would make the run wait half a second for each."""
    running = start_daemon(repos, secret_file, refused_delay=0)
    try:
        running.wait_ready()
        assert deliver_push(running.url, repos.commit())[0] == 200
        report = tmp_path / "report"
        result = subprocess.run(
            [str(Path(sys.executable).with_name("st")), "run", running.url + "/openapi.json",
             "--url", running.url, "--checks", "all", "--auth", f"deployhook:{STATUS_PASSWORD}",
             "--max-examples", str(ST_EXAMPLES), "--workers", "1", "--seed", "1",
             "--phases", "examples,coverage,fuzzing", "--report", "ndjson",
             "--report-dir", str(report), "--no-color"],
            capture_output=True, text=True, timeout=240, cwd=tmp_path)
        summary = result.stdout[-6000:]
        print(summary)
        assert result.returncode == 0, summary + result.stderr[-2000:]
        counts = re.search(r"(\d+) generated, (\d+) passed", summary)
        assert counts is not None and counts[1] == counts[2], summary
        assert int(counts[1]) >= 14 * ST_EXAMPLES
        assert "Failures:" not in summary and "Traceback" not in running.log()
        assert running.proc.poll() is None
    finally:
        running.stop()
