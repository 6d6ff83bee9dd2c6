"""Issue 11's acceptance for every forge, black-box: a real daemon, real git, real HTTP.

For each of the seven forges one daemon serves one target ``site`` whose
``repository`` is that forge's name for the checkout's origin; some targets pin
their ``forge``, the others leave it to detection.  Deliveries are built as the
forge sends them (:mod:`deployhook.forges.payloads`, :func:`deployhook.forges.sign_headers`)
and posted to ``/hooks/site``.  Each test starts from whatever the previous one
left (every test pushes its own new commit), so the order of tests does not matter.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deployhook.forges import payloads, sign_headers
from tests.helpers import ZERO, Daemon, Repos, git, http, make_repos, start_targets

SITE_SECRET = b"site secret for every forge 0123"
WRONG_SECRET = b"not the site's secret at all 987"
# GitLab's signing token (Standard Webhooks): a whsec_ key signs instead of a token.
SIGNING_SECRET = b"whsec_" + base64.b64encode(b"gitlab signing key 0123456789abc")
WRONG_SIGNING_SECRET = b"whsec_" + base64.b64encode(b"another signing key 0123456789a")
# id, forge, the repository as that forge names it, whether the target pins ``forge``,
# the target's secret and a wrong one of the same kind.
FORGE_TABLE = [
    ("github", "github", "octo-org/blog", False, SITE_SECRET, WRONG_SECRET),
    ("gitlab", "gitlab", "group/sub/blog", True, SITE_SECRET, WRONG_SECRET),
    ("gitlab-signing-token", "gitlab", "group/sub/blog", False, SIGNING_SECRET,
     WRONG_SIGNING_SECRET),
    ("gitea", "gitea", "octo-org/blog", False, SITE_SECRET, WRONG_SECRET),
    ("forgejo", "forgejo", "octo-org/blog", False, SITE_SECRET, WRONG_SECRET),
    ("gogs", "gogs", "octo-org/blog", True, SITE_SECRET, WRONG_SECRET),
    ("bitbucket", "bitbucket", "octo-org/blog", False, SITE_SECRET, WRONG_SECRET),
    ("bitbucket-server", "bitbucket-server", "PROJ/blog", True, SITE_SECRET, WRONG_SECRET),
]


@dataclass
class Site:
    """One forge's daemon and its target ``site``."""

    forge: str
    repository: str
    repos: Repos
    daemon: Daemon
    secret: bytes
    wrong: bytes

    @property
    def hook(self) -> str:
        return self.daemon.url + "/hooks/site"

    def head(self) -> str:
        return git(self.repos.deployed, "rev-parse", "HEAD")

    def runs(self) -> int:
        """The target's recorded runs, as /health reports them."""
        status, health = http("GET", self.daemon.url + "/health")
        assert status == 200, health
        return health["targets"]["site"]["runs"]

    def delivery(self, *, after: str, before: str = ZERO, ref: str = "refs/heads/main",
                 secret: bytes | None = None, delivery_id: str | None = None,
                 now: float | None = None) -> tuple[bytes, dict[str, str]]:
        """The body and headers this forge sends when ``ref`` moves to ``after``."""
        payload = payloads.push_payload(
            self.forge, repository=self.repository, ref=ref, before=before, after=after,
            pusher="octocat", email="octocat@example.com", default_branch="main")
        body = json.dumps(payload).encode()
        event = payloads.event_name(self.forge, ref=ref, after=after)
        headers = sign_headers(self.forge, self.secret if secret is None else secret, body,
                               event, delivery_id=delivery_id or str(uuid.uuid4()), now=now)
        return body, headers

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        status, answer = http("POST", self.hook, body, headers, auth=False)
        assert "result" in answer and "reason" in answer, (status, answer)
        return status, answer

    def context(self, answer: Any) -> str:
        return f"{self.forge}: {answer}\n--- daemon log ---\n{self.daemon.log()[-3000:]}"


@pytest.fixture(scope="module", params=FORGE_TABLE, ids=[row[0] for row in FORGE_TABLE])
def site(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    name, forge, repository, pin, site_secret, wrong = request.param
    root = tmp_path_factory.mktemp(name)
    repos = make_repos(root)
    secret = root / "site.secret"
    secret.write_bytes(site_secret + b"\n")
    target: dict[str, Any] = {"repo_path": str(repos.deployed), "repository": repository,
                              "secret_file": str(secret)}
    if pin:
        target["forge"] = forge
    daemon = start_targets(root, {"site": target})
    try:
        daemon.wait_ready()
        yield Site(forge, repository, repos, daemon, site_secret, wrong)
    finally:
        daemon.stop()


def test_a_push_deploys(site: Site) -> None:
    before = site.head()
    sha = site.repos.commit()
    status, answer = site.post(*site.delivery(before=before, after=sha))
    assert status == 200, site.context(answer)
    assert answer["result"] == "deployed", site.context(answer)
    assert site.head() == sha


def test_a_wrong_secret_gets_401(site: Site) -> None:
    before, fetches, runs = site.head(), site.repos.fetches(), site.runs()
    sha = site.repos.commit()
    status, answer = site.post(*site.delivery(before=before, after=sha, secret=site.wrong))
    assert status == 401, site.context(answer)
    assert site.head() == before and site.repos.fetches() == fetches
    assert site.runs() == runs


def test_a_tag_push_is_ignored(site: Site) -> None:
    before, fetches, runs = site.head(), site.repos.fetches(), site.runs()
    sha = site.repos.commit()
    tag = f"v1.{uuid.uuid4().hex[:8]}"
    git(site.repos.pusher, "tag", tag)
    git(site.repos.pusher, "push", "-q", "origin", tag)
    status, answer = site.post(*site.delivery(ref=f"refs/tags/{tag}", after=sha))
    assert status == 202, site.context(answer)
    assert answer["result"] == "ignored", site.context(answer)
    assert site.head() == before and site.repos.fetches() == fetches
    assert site.runs() == runs


def test_a_deletion_of_the_deployed_branch_is_ignored(site: Site) -> None:
    before, fetches, runs = site.head(), site.repos.fetches(), site.runs()
    site.repos.commit()  # origin moves on: a deploy would be visible
    status, answer = site.post(*site.delivery(before=before, after=ZERO))
    assert status == 202, site.context(answer)
    assert answer["result"] == "ignored", site.context(answer)
    assert site.head() == before and site.repos.fetches() == fetches
    assert site.runs() == runs


def test_a_replay_of_the_same_delivery_deploys_nothing(site: Site) -> None:
    """The same delivery (same id headers, same body) again, after origin moved on: it is
    answered from the record, with no fetch and no run; a second deploy would show as
    HEAD reaching the newer, undelivered commit."""
    before = site.head()
    sha = site.repos.commit()
    body, headers = site.delivery(before=before, after=sha)
    status, first = site.post(body, headers)
    assert status == 200 and site.head() == sha, site.context(first)
    fetches, runs = site.repos.fetches(), site.runs()
    site.repos.commit()  # pushed, never delivered
    status, again = site.post(body, headers)
    assert 200 <= status < 300, site.context(again)
    assert site.head() == sha, site.context(again)
    assert site.repos.fetches() == fetches, site.context(again)
    assert site.runs() == runs, site.context(again)
    assert again.get("replayed") is True, site.context(again)



def test_a_ping_is_answered_pong_where_the_forge_has_one(site: Site) -> None:
    """GitHub's ``ping`` and Data Center's ``diagnostics:ping`` ("Test connection") get
    200 pong and fetch nothing; the other forges test a hook with a push."""
    payload = payloads.ping_payload(site.forge, repository=site.repository,
                                    url=site.hook, default_branch="main")
    if payload is None:  # its test button sends a push: test_a_push_deploys covers it
        assert site.forge not in ("github", "bitbucket-server")
        return
    fetches, body = site.repos.fetches(), json.dumps(payload).encode()
    status, answer = site.post(body, sign_headers(site.forge, site.secret, body, "ping"))
    assert status == 200 and answer["result"] == "pong", site.context(answer)
    assert site.repos.fetches() == fetches


def test_a_stale_signed_timestamp_gets_401(site: Site) -> None:
    """GitLab's signing token signs a timestamp: one an hour old is refused, however
    well signed."""
    if not site.secret.startswith(b"whsec_"):
        return  # no other forge signs a timestamp: nothing can be stale
    before, fetches = site.head(), site.repos.fetches()
    sha = site.repos.commit()
    status, answer = site.post(*site.delivery(before=before, after=sha,
                                              now=time.time() - 3600))
    assert status == 401, site.context(answer)
    assert site.head() == before and site.repos.fetches() == fetches


def test_a_gitlab_token_ending_in_a_no_break_space_picks_its_target_at_the_shared_path(
        tmp_path: Path) -> None:
    """Two GitLab targets behind the shared path, one of them without ``repository``;
    the other's clear token ends in latin-1's no-break space (``\\xa0``), which HTTP,
    unlike ``str.strip()``, does not strip (RFC 9110 5.6.3): its delivery deploys that
    target alone, and the same token without that byte gets 401 and deploys nothing."""
    token = b"gitlab token with a tail\xa0"
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    a, b = make_repos(tmp_path / "a"), make_repos(tmp_path / "b")
    for name, secret in (("a", token), ("b", SITE_SECRET)):
        (tmp_path / f"{name}.secret").write_bytes(secret + b"\n")
    daemon = start_targets(tmp_path, {
        "a": {"repo_path": str(a.deployed), "repository": "group/a", "forge": "gitlab",
              "secret_file": str(tmp_path / "a.secret")},
        "b": {"repo_path": str(b.deployed), "secret_file": str(tmp_path / "b.secret")}})
    try:
        daemon.wait_ready()
        heads = {"a": git(a.deployed, "rev-parse", "HEAD"), "b": git(b.deployed, "rev-parse",
                                                                     "HEAD")}
        sha = a.commit()
        b.commit()
        payload = payloads.push_payload(
            "gitlab", repository="group/a", ref="refs/heads/main", before=heads["a"],
            after=sha, pusher="octocat", email="octocat@example.com", default_branch="main")
        body = json.dumps(payload).encode()
        event = payloads.event_name("gitlab", ref="refs/heads/main", after=sha)
        for secret, status in ((token.rstrip(b"\xa0"), 401), (token, 200)):
            headers = sign_headers("gitlab", secret, body, event, delivery_id=str(uuid.uuid4()))
            answer = http("POST", daemon.url + "/github", body, headers, auth=False)
            assert answer[0] == status, (secret, answer, daemon.log()[-3000:])
        assert git(a.deployed, "rev-parse", "HEAD") == sha
        assert git(b.deployed, "rev-parse", "HEAD") == heads["b"]
    finally:
        daemon.stop()
