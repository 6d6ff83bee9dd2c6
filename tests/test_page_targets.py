"""The status page and ``/health`` with many targets (issue 26): a page of targets at a
time, a search; /health's counts, pages and filters.

One real daemon serves 120 targets (small checkouts, no deploy needed) for the whole
module; plain HTTP, every link followed the way a browser resolves it (relative, so it
also works behind a path prefix).
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest

from tests.helpers import (
    Daemon,
    basic_auth,
    http,
    push_payload,
    signed,
    small_checkouts,
    start_targets,
    wait_for,
)

NAMES = [f"site-{i:03d}" for i in range(120)]
SECRET = "a secret of sixteen bytes or more"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("many-targets")
    secret = root / "secret.txt"
    secret.write_text(SECRET + "\n")
    checkouts = small_checkouts(root, NAMES)
    targets = {name: {"repo_path": str(path), "repository": f"octo-org/{name}-repo",
                      "branch": "main"}
               for name, path in checkouts.items()}
    targets["site-007"]["repository"] = "school/alice-pages"
    running = start_targets(root, targets, secret_file=str(secret))
    try:
        running.wait_ready(60)
        yield running
    finally:
        running.stop()


def get(daemon: Daemon, path: str) -> tuple[int, str]:
    """GET ``path`` (relative to the daemon's root) logged in: (status, HTML)."""
    request = urllib.request.Request(urllib.parse.urljoin(daemon.url + "/", path),
                                     headers=basic_auth())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def listed(html: str) -> list[str]:
    """The targets the page's table lists, in order."""
    return re.findall(r'<a href="targets/([a-z0-9_-]+)">', html)


def page_links(page: str) -> dict[str, str]:
    """The pager's links: label ("1", "next", ...) -> href (HTML-unescaped)."""
    nav = re.search(r'<nav class="pages".*?</nav>', page, re.S)
    if nav is None:
        return {}
    return {re.sub(r"[^a-z0-9]", "", unescape(label)): unescape(href)
            for href, label in re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', nav.group())}


@pytest.mark.parametrize(("path", "shown"), [
    ("/", NAMES[:50]),
    ("/?page=2", NAMES[50:100]),
    ("/?page=3", NAMES[100:]),
    ("/?q=site-11", NAMES[110:120]),
    ("/?q=SITE-11&page=1", NAMES[110:120]),  # case-insensitive
    ("/?q=alice", ["site-007"]),  # the repository matches too
    ("/?q=+site-119+", ["site-119"]),  # blanks around it do not count
    ("/?q=nobody-by-that-name", []),
])
def test_a_page_lists_its_targets(daemon: Daemon, path: str, shown: list[str]) -> None:
    status, html = get(daemon, path)
    assert status == 200, html[:500]
    assert listed(html) == shown
    if not shown:
        assert "No target's name or repository contains" in unescape(html)


@pytest.mark.parametrize(("path", "status", "reason"), [
    ("/?page=4", 404, "no page 4: 3 pages of targets"),
    ("/?q=site-11&page=2", 404, "no page 2: 1 page of targets"),
    ("/?page=0", 400, "page must be a whole number"),
    ("/?page=two", 400, "page must be a whole number"),
    ("/?page=-1", 400, "page must be a whole number"),
    ("/?q=" + "x" * 101, 400, "a search has at most 100 characters"),
])
def test_bad_pages_and_searches_are_refused(daemon: Daemon, path: str, status: int,
                                            reason: str) -> None:
    got, html = get(daemon, path)
    assert got == status, html[:500]
    assert reason in html and "Traceback" not in html


def test_the_pager_links_are_relative_and_lead_to_each_page(daemon: Daemon) -> None:
    seen: list[str] = []
    path = "/"
    for number in range(1, 4):
        status, html = get(daemon, path)
        assert status == 200
        assert f'<strong aria-current="page">{number}</strong>' in html
        seen += listed(html)
        links = page_links(html)
        assert all(href.startswith("?") for href in links.values()), links
        assert ("previous" in links) == (number > 1)
        if number == 3:
            assert "next" not in links
            break
        path = urllib.parse.urljoin("/", links["next"])
    assert seen == NAMES
    _, html = get(daemon, "/?page=2")
    assert set(page_links(html)) == {"previous", "1", "3", "next"}
    # every link and the search form resolve against the page's own URL: a proxy that
    # mounts the daemon under a prefix keeps working
    hrefs = re.findall(r'(?:href|action)="([^"]+)"', html)
    assert hrefs and not [h for h in hrefs if h.startswith(("/", "http"))], hrefs


def test_the_search_form_keeps_the_search_in_the_pager(daemon: Daemon) -> None:
    status, html = get(daemon, "/?q=site-0")  # site-000 .. site-099: two pages
    assert status == 200
    assert '<form class="search" method="get" action="."' in html
    assert 'name="q" value="site-0"' in html
    assert "Targets 1&#8211;50 of 100 matching" in html
    links = page_links(html)
    assert links["next"] == "?q=site-0&page=2"
    status, html = get(daemon, links["next"])
    assert status == 200 and listed(html) == NAMES[50:100]
    status, html = get(daemon, "/?q=a+b%26c%22%3C")  # escaped in the field and the links
    assert status == 200 and 'value="a b&amp;c&quot;&lt;"' in html


def test_every_target_page_answers(daemon: Daemon) -> None:
    for name in ("site-000", "site-119"):
        status, html = get(daemon, f"/targets/{name}")
        assert status == 200 and name in html, html[:500]


def test_a_checkout_gone_while_running_does_not_break_the_pages(daemon: Daemon,
                                                                tmp_path: Path) -> None:
    checkout = Path(re.findall(r"'repo_path': '([^']*site-118)'",
                               (Path(daemon.log_path).parent / "config.py").read_text())[0])
    checkout.rename(tmp_path / "moved-away")
    try:
        for path in ("/targets/site-118", "/?q=site-118", "/?page=3"):
            status, html = get(daemon, path)
            assert status == 200 and "site-118" in html, (path, status, html[:500])
    finally:
        (tmp_path / "moved-away").rename(checkout)


@pytest.mark.parametrize(("query", "shown", "total", "following"), [
    ("", NAMES[:50], 120, "/health?page=2&per_page=50"),  # the first page, in config order
    ("?page=3", NAMES[100:], 120, None),
    ("?page=2&per_page=30", NAMES[30:60], 120, "/health?page=3&per_page=30"),
    ("?per_page=500", NAMES[:100], 120, "/health?page=2&per_page=100"),  # at most 100
    ("?page=4", [], 120, None),  # past the last: an empty page, as /deployments
    ("?target=site-007", ["site-007"], 1, None),
])
def test_health_details_a_page_of_targets_and_counts_them_all(
        daemon: Daemon, query: str, shown: list[str], total: int,
        following: str | None) -> None:
    status, health = http("GET", daemon.url + "/health" + query)
    assert status == 200, health
    assert list(health["targets"]) == shown
    assert health["total"] == total and health["next"] == following
    assert health["counts"]["targets"] == 120 and health["status"] == "ok"
    assert "pid" in health and "repository" not in health  # several targets: none on top
    if shown:
        assert health["targets"][shown[0]]["branch"] == "main"


@pytest.mark.parametrize(("query", "reason"), [
    ("?page=0", "page must be a whole number"),
    ("?per_page=x", "per_page must be a whole number"),
    ("?target=nobody", "target must be the name of a target"),
    ("?state=broken", "state must be one of attention, deploying, failing, paused"),
    ("?per-page=2", "unknown query parameter 'per-page'"),
])
def test_health_refuses_a_bad_query_with_the_password_only(daemon: Daemon, query: str,
                                                           reason: str) -> None:
    status, answer = http("GET", daemon.url + "/health" + query)
    assert status == 400 and reason in answer["reason"], answer
    assert http("GET", daemon.url + "/health" + query, auth=False) == (200, {"status": "ok"})


def test_health_filters_the_targets_that_need_a_look(daemon: Daemon) -> None:
    """A paused target and one whose deploy failed (its checkout has no remote) are
    counted and listed by ``state``; the others are not."""
    config = Path(daemon.log_path).parent / "config.py"
    deployhook = [sys.executable, "-m", "deployhook"]
    subprocess.run([*deployhook, "pause", "--config", str(config), "--target", "site-003"],
                   check=True, capture_output=True)
    try:
        body, headers = signed(push_payload("c" * 40, repository="octo-org/site-005-repo"),
                               secret=SECRET.encode())
        status, answer = http("POST", daemon.url + "/hooks/site-005", body, headers)
        assert status == 500, answer
        wait_for(lambda: http("GET", daemon.url + "/health?per_page=1")[1]["counts"] == {
            "targets": 120, "attention": 2, "deploying": 0, "failing": 1, "paused": 1},
            what="the pause and the failure counted")
        for state, names in (("attention", ["site-003", "site-005"]),
                             ("paused", ["site-003"]), ("failing", ["site-005"]),
                             ("deploying", [])):
            status, health = http("GET", daemon.url + f"/health?state={state}")
            assert status == 200 and list(health["targets"]) == names, (state, health)
            assert health["total"] == len(names) and health["next"] is None
        status, health = http("GET", daemon.url + "/health?state=attention&per_page=1")
        assert list(health["targets"]) == ["site-003"]
        assert health["next"] == "/health?state=attention&page=2&per_page=1"
        assert list(http("GET", daemon.url + health["next"])[1]["targets"]) == ["site-005"]
        status, health = http("GET", daemon.url + "/health?target=site-007&state=attention")
        assert status == 200 and health["targets"] == {} and health["total"] == 0
    finally:
        subprocess.run([*deployhook, "resume", "--config", str(config), "--target",
                        "site-003"], check=True, capture_output=True)
