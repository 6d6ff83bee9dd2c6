"""Every HTTP answer of the webhook endpoint, end to end.

A real DeployHook runs on a real Tornado HTTP server (HookTestCase) and deploys
a real git checkout.  Each test checks the status code and the short JSON
``reason`` a user reads in GitHub's "Recent Deliveries"; every response body is
also checked for the secret (it must never appear).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from tornado.httpclient import HTTPResponse
from tornado.testing import gen_test

from deployhook.forges.github import sign
from tests.apptest import HookTestCase
from tests.helpers import FIXTURES, REPOSITORY, SECRET, ZERO, free_port, git, push_payload, signed

ZEN = "Design for failure."


def ping_payload(repository: str | None = REPOSITORY) -> dict[str, Any]:
    """A ping payload with the fields of GitHub's ping schema."""
    payload: dict[str, Any] = {
        "zen": ZEN, "hook_id": 42,
        "hook": {"type": "Repository", "id": 42, "events": ["push"],
                 "config": {"content_type": "json", "url": "https://example.com/github"}},
    }
    if repository:
        payload["repository"] = {"id": 1, "full_name": repository}
    return payload


class EndpointTestCase(HookTestCase):
    """HookTestCase with a raw request helper that checks every answer's shape."""

    async def call(self, method: str = "POST", path: str = "/github", body: bytes = b"",
                   headers: dict[str, str] | None = None,
                   body_producer: Callable[[Callable[[bytes], Awaitable[None]]],
                                           Awaitable[None]] | None = None,
                   ) -> tuple[int, dict[str, Any]]:
        """Send one request; return (status, JSON body) after checking the raw answer."""
        response: HTTPResponse = await self.http_client.fetch(
            self.get_url(path), method=method,
            body=None if method in ("GET", "HEAD") or body_producer else body,
            body_producer=body_producer, headers=headers or {}, raise_error=False,
            request_timeout=60, allow_nonstandard_methods=True)
        raw = response.body or b""
        assert response.code != 599, f"no HTTP answer: {response.error!r}"
        assert SECRET not in raw, raw
        assert SECRET.decode() not in raw.decode(errors="replace"), raw
        assert response.headers.get("Content-Type", "").startswith("application/json"), \
            (response.code, raw)
        body_json = json.loads(raw)
        assert isinstance(body_json, dict), body_json
        assert isinstance(body_json.get("reason", ""), str), body_json
        return response.code, body_json

    async def post(self, payload: dict[str, Any] | bytes, event: str = "push",
                   drop: tuple[str, ...] = (), delivery: str = "72d3162e-cc78-11e3",
                   **headers: str) -> tuple[int, dict[str, Any]]:
        """POST a delivery signed like GitHub; ``drop`` removes headers, ``headers`` add."""
        body, sent = signed(payload, event, delivery=delivery)
        for name in drop:
            del sent[name]
        sent.update({name.replace("_", "-"): value for name, value in headers.items()})
        return await self.call(body=body, headers=sent)

    async def raw_request(self, data: bytes) -> tuple[int, dict[str, Any]]:
        """Write ``data`` in one go on a raw socket; return (status, JSON body or raw)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.get_http_port())
        answer = b""
        try:
            writer.write(data)
            await writer.drain()
            while chunk := await reader.read(65536):
                answer += chunk
        except ConnectionError:
            pass  # the server may close while we still send; keep what it answered
        finally:
            writer.close()
        head, _, raw = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 "), answer
        assert SECRET not in answer
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"raw": answer.decode(errors="replace")}
        return int(head.split()[1]), body

    def deployed_head(self) -> str:
        """HEAD of the deployed checkout."""
        return self.repos.head(self.repos.deployed)


class PlainEndpointTest(EndpointTestCase):
    """GET, /health, 404 and 405: the answers that never look at a delivery."""

    @gen_test(timeout=60)
    async def test_get_webhook_path_says_listening(self) -> None:
        """GET /github is a reachability check: 200 and a hint to POST."""
        status, body = await self.call("GET")
        assert status == 200, body
        assert body["result"] == "ok"
        assert "listening" in body["reason"] and "POST" in body["reason"]

    @gen_test(timeout=60)
    async def test_health_reports_target(self) -> None:
        """GET /health: 200 with status, branch, head and repository of the checkout."""
        status, body = await self.call("GET", "/health")
        assert status == 200, body
        assert body["status"] == "ok"
        assert body["branch"] == "main"
        assert body["head"] == self.deployed_head()
        assert body["repository"] == REPOSITORY
        assert body["deploying"] is False

    @gen_test(timeout=60)
    async def test_unknown_path_is_json_404(self) -> None:
        """Any other path: 404 with a JSON reason."""
        for path in ("/nope", "/index.html", "/github/", "/githubx", "/health/x"):
            status, body = await self.call("POST" if path == "/nope" else "GET", path)
            assert status == 404, (path, body)
            assert body == {"result": "error", "reason": "not found"}, path

    @gen_test(timeout=60)
    async def test_traversal_path_is_404(self) -> None:
        """Raw traversal paths (not normalised by the client) match no route."""
        for path in ("/github/..%2f..%2fetc", "/github/..%2F..%2Fetc%2Fpasswd",
                     "/github/../etc/passwd", "/github%2f..%2fhealth"):
            status, body = await self.call("GET", path)
            assert status == 404, (path, body)
            assert body["reason"] == "not found", path
            body_bytes, headers = signed(ping_payload(), "ping")
            status, body = await self.call("POST", path, body_bytes, headers)
            assert status == 404, (path, body)

    @gen_test(timeout=60)
    async def test_post_to_health_is_405(self) -> None:
        """/health is read-only: POST there is 405 JSON."""
        status, body = await self.call("POST", "/health", b"{}", {})
        assert status == 405, body
        assert body["reason"] == "Method Not Allowed"

    @gen_test(timeout=60)
    async def test_other_methods_are_405(self) -> None:
        """PUT, DELETE and PATCH on /github: 405 with a JSON reason, nothing deployed."""
        sha = self.repos.commit()
        before = self.deployed_head()
        body_bytes, headers = signed(push_payload(sha))
        for method in ("PUT", "DELETE", "PATCH"):
            status, body = await self.call(method, body=body_bytes, headers=headers)
            assert status == 405, (method, body)
            assert body["result"] == "error", method
            assert body["reason"] == "Method Not Allowed", method
        assert self.deployed_head() == before
        assert self.repos.fetches() == 0


class SecretNeverShownTest(EndpointTestCase):
    """The secret's bytes are in no answer (``call`` also checks every other test)."""

    @gen_test(timeout=60)
    async def test_secret_not_in_any_answer(self) -> None:
        """401, 400, 415, 403, 202, 200 and 409 answers and /health never hold the secret."""
        answers = [
            await self.call(body=b"{}", headers={"X-GitHub-Event": "ping"}),
            await self.post(b"not json"),
            await self.post(ping_payload(), "ping", Content_Type="text/plain"),
            await self.post(ping_payload("someone/else"), "ping"),
            await self.post(push_payload(ZERO, before=self.deployed_head())),
            await self.post(ping_payload(), "ping"),
            await self.post(push_payload("ab" * 20)),
            await self.call("GET", "/health"),
        ]
        assert [status for status, _ in answers] == [401, 400, 415, 403, 202, 200, 409, 200]
        for _, body in answers:
            text = json.dumps(body)
            assert SECRET.decode() not in text
            assert "Secret to Everybody" not in text


class SecretTest(EndpointTestCase):
    """The secret file is checked before anything else in a POST: 500 if unusable."""

    @gen_test(timeout=60)
    async def test_missing_secret_file_is_500_naming_the_file(self) -> None:
        """No secret file: 500 whose reason names the path, never a secret."""
        self.secret_path.unlink()
        status, body = await self.post(ping_payload(), "ping")
        assert status == 500, body
        assert body["result"] == "rejected"
        assert str(self.secret_path) in body["reason"]
        assert "not found" in body["reason"]

    @gen_test(timeout=60)
    async def test_secret_contents_never_in_reason(self) -> None:
        """An unusable secret file (placeholder) is named; its contents are not shown."""
        self.secret_path.write_bytes(b"replace-me " + SECRET + b"\n")
        status, body = await self.post(ping_payload(), "ping")
        assert status == 500, body
        assert str(self.secret_path) in body["reason"]
        assert "replace-me" not in body["reason"]

    @gen_test(timeout=60)
    async def test_unreadable_secret_file_is_500(self) -> None:
        """A secret path that cannot be read (a directory): 500 saying so."""
        self.secret_path.unlink()
        self.secret_path.mkdir()
        status, body = await self.post(ping_payload(), "ping")
        assert status == 500, body
        assert body["reason"] == f"secret file {self.secret_path} is not readable on the server"

    @gen_test(timeout=60)
    async def test_empty_secret_file_is_500(self) -> None:
        """An empty (or whitespace-only) secret file: 500 saying it is empty."""
        self.secret_path.write_bytes(b"  \n")
        status, body = await self.post(ping_payload(), "ping")
        assert status == 500, body
        assert str(self.secret_path) in body["reason"]
        assert "empty" in body["reason"]

    @gen_test(timeout=60)
    async def test_secret_checked_before_signature(self) -> None:
        """A wrong signature with a missing secret file still answers 500 (not 401)."""
        self.secret_path.unlink()
        body_bytes, headers = signed(ping_payload(), "ping", secret=b"wrong secret")
        status, body = await self.call(body=body_bytes, headers=headers)
        assert status == 500, body
        assert str(self.secret_path) in body["reason"]

    @gen_test(timeout=60)
    async def test_secret_file_restored_recovers(self) -> None:
        """The secret is re-read per delivery: restoring the file works without restart."""
        self.secret_path.unlink()
        status, _ = await self.post(ping_payload(), "ping")
        assert status == 500
        self.secret_path.write_bytes(SECRET + b"\n")
        status, body = await self.post(ping_payload(), "ping")
        assert status == 200, body


class SignatureTest(EndpointTestCase):
    """Signature checks: 401 with a reason, never the expected MAC."""

    @gen_test(timeout=60)
    async def test_missing_signature_is_401(self) -> None:
        """No signature header at all: 401 telling the user to set a secret."""
        status, body = await self.post(ping_payload(), "ping",
                                       drop=("X-Hub-Signature", "X-Hub-Signature-256"))
        assert status == 401, body
        assert body["result"] == "rejected"
        assert "missing X-Hub-Signature-256" in body["reason"]
        assert "secret" in body["reason"]

    @gen_test(timeout=60)
    async def test_wrong_signature_is_401_without_expected_mac(self) -> None:
        """A signature made with another secret: 401, the body never shows the real MAC."""
        body_bytes, headers = signed(push_payload("ab" * 20), secret=b"not the secret")
        status, body = await self.call(body=body_bytes, headers=headers)
        assert status == 401, body
        assert "X-Hub-Signature-256 does not match" in body["reason"]
        text = json.dumps(body)
        for algorithm in ("sha256", "sha1"):
            expected = sign(SECRET, body_bytes, algorithm).partition("=")[2]
            assert expected not in text
            assert expected.upper() not in text.upper()
        assert self.repos.fetches() == 0

    @gen_test(timeout=60)
    async def test_tampered_body_is_401(self) -> None:
        """A correct signature for other bytes: 401."""
        body_bytes, headers = signed(ping_payload(), "ping")
        status, body = await self.call(body=body_bytes + b" ", headers=headers)
        assert status == 401, body
        assert "does not match" in body["reason"]

    @gen_test(timeout=60)
    async def test_malformed_signature_is_401(self) -> None:
        """A header that is not ``sha256=<64 hex>``: 401 naming the expected form."""
        for value in ("deadbeef", "sha1=" + "0" * 40, "sha256=xyz", "sha256=" + "0" * 63):
            status, body = await self.post(ping_payload(), "ping",
                                           X_Hub_Signature_256=value)
            assert status == 401, (value, body)
            assert "malformed X-Hub-Signature-256" in body["reason"], value

    @gen_test(timeout=60)
    async def test_sha1_only_is_accepted(self) -> None:
        """Only the legacy ``X-Hub-Signature: sha1=`` header, correct: accepted."""
        status, body = await self.post(ping_payload(), "ping", drop=("X-Hub-Signature-256",))
        assert status == 200, body
        assert body["result"] == "pong"

    @gen_test(timeout=60)
    async def test_wrong_sha1_only_is_401(self) -> None:
        """Only a wrong ``X-Hub-Signature``: 401 naming that header."""
        status, body = await self.post(ping_payload(), "ping", drop=("X-Hub-Signature-256",),
                                       X_Hub_Signature="sha1=" + "0" * 40)
        assert status == 401, body
        assert "X-Hub-Signature does not match" in body["reason"]

    @gen_test(timeout=60)
    async def test_correct_sha256_wins_over_wrong_sha1(self) -> None:
        """SHA-256 is preferred: a wrong SHA-1 next to a right SHA-256 is accepted."""
        status, body = await self.post(ping_payload(), "ping",
                                       X_Hub_Signature="sha1=" + "0" * 40)
        assert status == 200, body


class PayloadTest(EndpointTestCase):
    """Parsing: content types, JSON, ping, and the event header."""

    @gen_test(timeout=60)
    async def test_not_json_is_400(self) -> None:
        """A correctly signed body that is not JSON: 400."""
        status, body = await self.post(b"this is not json {", "push")
        assert status == 400, body
        assert body["result"] == "rejected"
        assert body["reason"] == "payload is not valid JSON"

    @gen_test(timeout=60)
    async def test_json_that_is_not_an_object_is_400(self) -> None:
        """A JSON array: 400 saying it is not an object."""
        status, body = await self.post(b"[1, 2, 3]", "push")
        assert status == 400, body
        assert body["reason"] == "payload is not a JSON object"

    @gen_test(timeout=60)
    async def test_not_utf8_is_400(self) -> None:
        """Bytes that are not UTF-8: 400."""
        status, body = await self.post(b'{"zen": "\xff"}', "ping")
        assert status == 400, body
        assert body["reason"] == "body is not UTF-8"

    @gen_test(timeout=60)
    async def test_missing_event_header_is_400(self) -> None:
        """No X-GitHub-Event: 400 naming the header."""
        status, body = await self.post(ping_payload(), "ping", drop=("X-GitHub-Event",))
        assert status == 400, body
        assert body["reason"] == "missing X-GitHub-Event header"

    @gen_test(timeout=60)
    async def test_unsupported_content_type_is_415(self) -> None:
        """text/plain: 415 naming the type and the two supported ones."""
        status, body = await self.post(ping_payload(), "ping", Content_Type="text/plain")
        assert status == 415, body
        assert body["result"] == "rejected"
        assert "'text/plain'" in body["reason"]
        assert "application/json" in body["reason"]
        assert "application/x-www-form-urlencoded" in body["reason"]

    @gen_test(timeout=60)
    async def test_json_with_charset_is_accepted(self) -> None:
        """``application/json; charset=utf-8`` is JSON."""
        status, body = await self.post(ping_payload(), "ping",
                                       Content_Type="application/json; charset=utf-8")
        assert status == 200, body

    @gen_test(timeout=60)
    async def test_form_encoded_ping(self) -> None:
        """The hook API's default content type: ``payload=<json>`` form field."""
        body_bytes, headers = signed(ping_payload(), "ping", form=True)
        assert headers["Content-Type"] == "application/x-www-form-urlencoded"
        status, body = await self.call(body=body_bytes, headers=headers)
        assert status == 200, body
        assert body["result"] == "pong"
        assert body["zen"] == ZEN

    @gen_test(timeout=60)
    async def test_form_without_payload_field_is_400(self) -> None:
        """A form body without a ``payload`` field: 400."""
        status, body = await self.post(b"other=1", "ping",
                                       Content_Type="application/x-www-form-urlencoded")
        assert status == 400, body
        assert "'payload' field" in body["reason"]

    @gen_test(timeout=60)
    async def test_ping_echoes_zen(self) -> None:
        """A ping: 200, result pong, GitHub's zen echoed back."""
        status, body = await self.post(ping_payload(), "ping")
        assert status == 200, body
        assert body == {"result": "pong", "zen": ZEN, "reason": "ping received"}

    @gen_test(timeout=60)
    async def test_org_ping_without_repository(self) -> None:
        """An organisation hook's ping names no repository: still 200."""
        status, body = await self.post(ping_payload(repository=None), "ping")
        assert status == 200, body


class DecisionTest(EndpointTestCase):
    """Valid deliveries that deploy nothing (202) or are for someone else (403)."""

    @gen_test(timeout=60)
    async def test_push_to_other_branch_is_ignored(self) -> None:
        """A push to another branch: 202 ignored, no fetch."""
        sha = self.repos.commit(push=False)
        git(self.repos.pusher, "push", "-q", "origin", "HEAD:feature")
        before = self.deployed_head()
        status, body = await self.post(push_payload(sha, ref="refs/heads/feature"))
        assert status == 202, body
        assert body["result"] == "ignored"
        assert body["reason"] == "push to feature ignored; only main is deployed"
        assert self.deployed_head() == before
        assert self.repos.fetches() == 0

    @gen_test(timeout=60)
    async def test_tag_push_is_ignored(self) -> None:
        """A tag push: 202, tags are not branches."""
        sha = self.deployed_head()
        status, body = await self.post(push_payload(sha, ref="refs/tags/v1.0"))
        assert status == 202, body
        assert body["result"] == "ignored"
        assert body["reason"] == "refs/tags/v1.0 is not a branch; only main is deployed"
        assert self.repos.fetches() == 0

    @gen_test(timeout=60)
    async def test_branch_deletion_keeps_checkout(self) -> None:
        """Deleting the deployed branch (after = 40 zeros): 202, checkout untouched."""
        before = self.deployed_head()
        status, body = await self.post(push_payload(ZERO, before=before))
        assert status == 202, body
        assert body["result"] == "ignored"
        assert body["reason"] == "branch main was deleted; the checkout is kept as it is"
        assert self.deployed_head() == before
        assert (self.repos.deployed / "app.py").read_text() == "print('blog')\n"
        assert git(self.repos.deployed, "status", "--porcelain") == ""
        assert self.repos.fetches() == 0

    @gen_test(timeout=60)
    async def test_other_event_is_ignored(self) -> None:
        """An ``issues`` event for the right repository: 202 ignored."""
        payload = {"action": "opened", "issue": {"number": 1},
                   "repository": {"full_name": REPOSITORY}}
        status, body = await self.post(payload, "issues")
        assert status == 202, body
        assert body["result"] == "ignored"
        assert body["reason"] == "event 'issues' is not deployed; only push is"

    @gen_test(timeout=60)
    async def test_other_repository_is_403_naming_both(self) -> None:
        """A delivery for another repository: 403 naming ours and theirs."""
        sha = self.repos.commit()
        status, body = await self.post(push_payload(sha, repository="evil/fork"))
        assert status == 403, body
        assert body["result"] == "rejected"
        assert body["reason"] == f"this hook deploys {REPOSITORY}, not evil/fork"
        assert self.repos.fetches() == 0

    @gen_test(timeout=60)
    async def test_repository_compare_is_case_insensitive(self) -> None:
        """GitHub names are case-insensitive: OCTO-ORG/Blog is ours."""
        status, body = await self.post(ping_payload(REPOSITORY.upper()), "ping")
        assert status == 200, body

    @gen_test(timeout=60)
    async def test_malformed_push_is_400(self) -> None:
        """A push with a non-hex ``after``: 400 naming the field."""
        status, body = await self.post(push_payload("not-a-sha"))
        assert status == 400, body
        assert body["reason"] == "github push 'after' is not a hex commit SHA"


class DeployTest(EndpointTestCase):
    """Pushes to the deployed branch: 200, 409, 500 and recovery, with real git."""

    @gen_test(timeout=60)
    async def test_push_deploys_and_redelivery_is_already_deployed(self) -> None:
        """A new commit deploys (200); the same delivery again is 200 without a fetch."""
        before = self.deployed_head()
        sha = self.repos.commit()
        status, body = await self.post(push_payload(sha, before=before))
        assert status == 200, body
        assert body["result"] == "deployed"
        assert body["reason"] == f"deployed {sha[:12]}"
        assert body["before"] == before
        assert body["after"] == sha
        assert body["head"] == sha
        assert isinstance(body["duration"], (int, float)) and body["duration"] >= 0
        assert self.deployed_head() == sha
        fetches = self.repos.fetches()
        assert fetches >= 1

        status, body = await self.post(push_payload(sha, before=before),
                                       delivery="another-delivery-id")
        assert status == 200, body
        assert body["result"] == "deployed"
        assert body["reason"] == f"already deployed {sha[:12]}"
        assert body["head"] == sha
        assert self.repos.fetches() == fetches

        # GitHub's "Redeliver" sends the same delivery ID: answered from the record.
        status, body = await self.post(push_payload(sha, before=before))
        assert status == 200, body
        assert body["replayed"] is True and "already handled by run" in body["reason"]
        assert body["head"] == sha
        assert self.repos.fetches() == fetches

        status, health = await self.call("GET", "/health")
        assert status == 200
        assert health["head"] == sha
        assert health["last_deploy"]["ok"] is True

    @gen_test(timeout=60)
    async def test_unknown_after_is_409(self) -> None:
        """``after`` not on the remote: 409 not deployed, HEAD stays put."""
        before = self.deployed_head()
        after = "ab" * 20
        status, body = await self.post(push_payload(after, before=before))
        assert status == 409, body
        assert body["result"] == "not deployed"
        assert body["reason"].startswith(f"{after} is not in refs/heads/main after fetching")
        assert body["after"] == after
        assert body["head"] == before
        assert self.deployed_head() == before
        assert self.repos.fetches() >= 1

    @gen_test(timeout=60)
    async def test_unreachable_origin_is_500_then_recovers(self) -> None:
        """Origin gone: 500 with git's reason; origin back: the next delivery deploys."""
        before = self.deployed_head()
        sha = self.repos.commit()
        moved = self.repos.origin.with_name("origin-moved.git")
        self.repos.origin.rename(moved)
        try:
            status, body = await self.post(push_payload(sha, before=before))
        finally:
            moved.rename(self.repos.origin)
        assert status == 500, body
        assert body["result"] == "failed"
        assert body["reason"].startswith("fetch failed: fatal:"), body
        assert "origin.git" in body["reason"] or "repository" in body["reason"]
        assert "@" not in body["reason"]
        assert body["head"] == before
        assert self.deployed_head() == before
        status, health = await self.call("GET", "/health")
        assert health["last_deploy"]["ok"] is False
        assert health["last_deploy"]["reason"] == body["reason"]

        status, body = await self.post(push_payload(sha, before=before))
        assert status == 200, body
        assert body["reason"] == f"deployed {sha[:12]}"
        assert self.deployed_head() == sha

    @gen_test(timeout=60)
    async def test_failed_fetch_reason_has_no_credentials(self) -> None:
        """A remote URL with a token that cannot be reached: 500, the token is not shown."""
        token = "ghp_ThisIsNotARealToken0123456789"
        url = f"http://deploy:{token}@127.0.0.1:{free_port()}/{REPOSITORY}.git"
        git(self.repos.deployed, "remote", "set-url", "origin", url)
        status, body = await self.post(push_payload(self.repos.commit()))
        assert status == 500, body
        assert body["reason"].startswith("fetch failed:"), body
        assert token not in json.dumps(body)
        assert "deploy:" not in body["reason"]

    @gen_test(timeout=60)
    async def test_form_encoded_push_deploys(self) -> None:
        """A form-encoded push deploys like a JSON one."""
        sha = self.repos.commit()
        body_bytes, headers = signed(push_payload(sha), form=True)
        status, body = await self.call(body=body_bytes, headers=headers)
        assert status == 200, body
        assert self.deployed_head() == sha


class DeployFailureTest(EndpointTestCase):
    """Deploys that fail on the server side: 500 with a reason that says what to fix."""

    @gen_test(timeout=60)
    async def test_checkout_on_other_branch_is_500(self) -> None:
        """The deployed checkout is on another branch: 500 naming the command to run."""
        git(self.repos.deployed, "checkout", "-q", "-b", "hotfix")
        before = self.deployed_head()
        status, body = await self.post(push_payload(self.repos.commit()))
        assert status == 500, body
        assert body["result"] == "failed"
        assert "is on hotfix, not main" in body["reason"]
        assert "git checkout main" in body["reason"]
        assert self.deployed_head() == before
        assert self.repos.fetches() == 0

    async def push_over_local_edit(self) -> tuple[int, dict[str, Any], str]:
        """Edit app.py in the checkout, push a commit changing it; return the answer."""
        before = self.deployed_head()
        (self.repos.deployed / "app.py").write_text("print('hot patch')\n")
        sha = self.repos.commit("app.py", "print('v2')\n")
        status, body = await self.post(push_payload(sha, before=before))
        return status, body, before

    @gen_test(timeout=60)
    async def test_local_changes_block_fast_forward_is_500(self) -> None:
        """A local edit the pushed commit would overwrite: 500, the edit is kept."""
        status, body, before = await self.push_over_local_edit()
        assert status == 500, body
        assert body["result"] == "failed"
        assert body["reason"].startswith("merge failed: error: Your local changes"), body
        assert self.deployed_head() == before
        assert (self.repos.deployed / "app.py").read_text() == "print('hot patch')\n"

    @gen_test(timeout=60)
    async def test_local_changes_reason_names_the_file(self) -> None:
        """The reason names the files git lists on the indented lines below its error."""
        status, body, _ = await self.push_over_local_edit()
        assert status == 500, body
        assert "app.py" in body["reason"], body["reason"]

    @gen_test(timeout=60)
    async def test_missing_submodule_commit_is_500_and_restored(self) -> None:
        """A gitlink to an unpushed submodule commit: 500 naming it, HEAD moved back."""
        before = self.deployed_head()
        sub = self.repos.pusher / "posts"
        git(sub, "pull", "-q", "origin", "main")
        (sub / "index.rst").write_text("never pushed\n")
        git(sub, "commit", "-q", "-am", "local only")
        missing = self.repos.head(sub)
        git(self.repos.pusher, "add", "posts")
        git(self.repos.pusher, "commit", "-q", "-m", "bump posts to a missing commit")
        git(self.repos.pusher, "push", "-q", "origin", "HEAD:main")
        sha = self.repos.head(self.repos.pusher)
        status, body = await self.post(push_payload(sha, before=before))
        assert status == 500, body
        assert body["result"] == "failed"
        assert body["reason"].startswith("submodule update failed:"), body
        assert missing in body["reason"], body
        assert "posts" in body["reason"]
        assert body["reason"].endswith(f"; checkout restored to {before}"), body
        assert body["head"] == before
        assert self.deployed_head() == before
        assert git(self.repos.deployed, "status", "--porcelain") == ""


class ConcurrentPushesTest(EndpointTestCase):
    """Deliveries at once, answered once deployed (response_timeout long enough for the
    runs on a loaded machine: a shorter one answers "202 queued", honestly)."""

    settings: ClassVar[dict[str, Any]] = {"response_timeout": 30.0}

    @gen_test(timeout=60)
    async def test_concurrent_pushes_all_answered(self) -> None:
        """Three pushes delivered together: all 200, the checkout at the newest."""
        self.repos.slow(0.3)
        shas = [self.repos.commit(f"post{i}.rst") for i in range(3)]
        results = await asyncio.gather(*(
            self.post(push_payload(sha), delivery=f"id-{i}") for i, sha in enumerate(shas)))
        for status, body in results:
            assert status == 200, body
            assert body["result"] == "deployed"
        assert self.deployed_head() == shas[-1]
        assert self.repos.fetches() <= 2


class ConcurrencyTest(EndpointTestCase):
    """Several deliveries at once, late ones, and one that outlives response_timeout."""

    settings: ClassVar[dict[str, Any]] = {"response_timeout": 1.0}

    @gen_test(timeout=60)
    async def test_slow_deploy_answers_202_then_finishes(self) -> None:
        """A deploy longer than response_timeout: 202 deploying; /health shows the end."""
        sha = self.repos.commit()
        self.repos.slow(3)
        status, body = await self.post(push_payload(sha))
        assert status == 202, body
        assert body["result"] == "deploying"
        assert body["after"] == sha
        assert "/health" in body["reason"]
        status, health = await self.call("GET", "/health")
        assert status == 200 and health["deploying"] is True, health
        await self.hook.worker.idle()
        status, health = await self.call("GET", "/health")
        assert health["deploying"] is False
        assert health["head"] == sha
        assert self.deployed_head() == sha

    @gen_test(timeout=60)
    async def test_late_older_push_is_already_deployed(self) -> None:
        """An older push arriving after a newer one: 200 already deployed, no fetch."""
        first = self.repos.commit("a.rst")
        second = self.repos.commit("b.rst")
        status, body = await self.post(push_payload(second, before=first))
        assert status == 200, body
        fetches = self.repos.fetches()
        status, body = await self.post(push_payload(first))
        assert status == 200, body
        assert body["reason"] == f"already deployed {first[:12]}"
        assert body["head"] == second
        assert self.repos.fetches() == fetches

    @gen_test(timeout=60)
    async def test_aborted_request_does_not_stay_in_flight(self) -> None:
        """A client that hangs up mid-body is not counted in flight (reload not blocked)."""
        body_bytes, headers = signed(ping_payload(), "ping")
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        _reader, writer = await asyncio.open_connection("127.0.0.1", self.get_http_port())
        writer.write(f"POST /github HTTP/1.1\r\nHost: x\r\n{head}"
                     f"Content-Length: {len(body_bytes)}\r\n\r\n".encode()
                     + body_bytes[:10])
        await writer.drain()
        await self.until(lambda: self.hook.in_flight == 1, "the request in flight")
        writer.close()
        await writer.wait_closed()
        await self.until(lambda: self.hook.in_flight == 0, "the aborted request let go")
        status, body = await self.post(ping_payload(), "ping")
        assert status == 200, body
        assert self.hook.in_flight == 0
        assert self.hook.deploying() is False


class BodySizeTest(EndpointTestCase):
    """``max_body_size``: 413 whether the size is announced or streamed in chunks."""

    settings: ClassVar[dict[str, Any]] = {"max_body_size": 1000}

    def big_ping(self, size: int) -> tuple[bytes, dict[str, str]]:
        """A correctly signed ping padded to ``size`` bytes."""
        payload = ping_payload()
        payload["padding"] = ""
        base = len(json.dumps(payload, separators=(",", ":")))
        payload["padding"] = "x" * (size - base)
        body, headers = signed(payload, "ping")
        assert len(body) == size
        return body, headers

    @gen_test(timeout=60)
    async def test_body_at_limit_is_accepted(self) -> None:
        """Exactly ``max_body_size`` bytes is fine."""
        body_bytes, headers = self.big_ping(1000)
        status, body = await self.call(body=body_bytes, headers=headers)
        assert status == 200, body

    @gen_test(timeout=60)
    async def test_content_length_over_limit_is_413(self) -> None:
        """A Content-Length over the limit: 413 naming both sizes."""
        body_bytes, headers = self.big_ping(1500)
        status, body = await self.call(body=body_bytes, headers=headers)
        assert status == 413, body
        assert body["result"] == "rejected"
        assert body["reason"] == "body of 1500 bytes is over the limit of 1000 bytes"

    @gen_test(timeout=60)
    async def test_content_length_far_over_limit_is_413(self) -> None:
        """Far over the limit (past the connection's own cap) the answer is still 413."""
        for size in (5_000, 200_000, 3_000_000):
            body_bytes, headers = self.big_ping(size)
            status, body = await self.call(body=body_bytes, headers=headers)
            assert status == 413, (size, body)
            assert body["reason"] == f"body of {size} bytes is over the limit of 1000 bytes"

    @gen_test(timeout=60)
    async def test_chunked_body_over_limit_is_413(self) -> None:
        """A chunked body (no Content-Length) that grows over the limit: 413."""
        body_bytes, headers = self.big_ping(1500)

        async def produce(write: Callable[[bytes], Awaitable[None]]) -> None:
            for start in range(0, len(body_bytes), 300):
                await write(body_bytes[start:start + 300])

        status, body = await self.call(headers=headers, body_producer=produce)
        assert status == 413, body
        assert body["result"] == "rejected"
        assert body["reason"].startswith("body of ")
        assert body["reason"].endswith("bytes is over the limit of 1000 bytes")

    @gen_test(timeout=60)
    async def test_long_chunked_stream_over_limit_is_413(self) -> None:
        """A fast chunked stream far past max_body_size gets a JSON 413.

        Tornado coalesces buffered chunks before data_received(); the handler
        lifts the connection cap for chunked bodies so it can answer itself.
        """
        body_bytes, headers = self.big_ping(300_000)
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (
            body_bytes[start:start + 500] for start in range(0, len(body_bytes), 500)))
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        status, body = await self.raw_request(
            f"POST /github HTTP/1.1\r\nHost: x\r\n{head}"
            "Transfer-Encoding: chunked\r\n\r\n".encode() + chunks + b"0\r\n\r\n")
        assert status == 413, body
        assert body["reason"].endswith("bytes is over the limit of 1000 bytes")

    @gen_test(timeout=60)
    async def test_one_big_chunk_over_limit_is_413(self) -> None:
        """One chunk announced far over max_body_size still gets a JSON 413."""
        body_bytes, headers = self.big_ping(5_000)

        async def produce(write: Callable[[bytes], Awaitable[None]]) -> None:
            await write(body_bytes)

        status, body = await self.call(headers=headers, body_producer=produce)
        assert status == 413, body
        assert body["reason"] == "body of 5000 bytes is over the limit of 1000 bytes"

    @gen_test(timeout=60)
    async def test_expect_continue_over_limit_is_413(self) -> None:
        """``Expect: 100-continue`` (as curl sends) with a large body: 413, body unsent."""
        body_bytes, headers = self.big_ping(50_000)
        response = await self.http_client.fetch(
            self.get_url("/github"), method="POST", body=body_bytes, headers=headers,
            expect_100_continue=True, raise_error=False, request_timeout=60)
        assert response.code == 413, (response.code, response.body)
        assert b"over the limit of 1000 bytes" in response.body

    @gen_test(timeout=60)
    async def test_chunked_body_under_limit_is_accepted(self) -> None:
        """A chunked body within the limit is verified and answered normally."""
        body_bytes, headers = self.big_ping(900)

        async def produce(write: Callable[[bytes], Awaitable[None]]) -> None:
            for start in range(0, len(body_bytes), 300):
                await write(body_bytes[start:start + 300])

        status, body = await self.call(headers=headers, body_producer=produce)
        assert status == 200, body
        assert body["zen"] == ZEN

    @gen_test(timeout=60)
    async def test_size_checked_before_secret(self) -> None:
        """Too large with a missing secret file: 413 (size comes first)."""
        self.secret_path.unlink()
        body_bytes, headers = self.big_ping(1500)
        status, body = await self.call(body=body_bytes, headers=headers)
        assert status == 413, body

    @gen_test(timeout=60)
    async def test_server_still_answers_after_413(self) -> None:
        """A rejected large body leaves the server serving the next delivery."""
        body_bytes, headers = self.big_ping(1500)
        status, _ = await self.call(body=body_bytes, headers=headers)
        assert status == 413
        status, body = await self.post(ping_payload(), "ping")
        assert status == 200, body


class FixturePingTest(EndpointTestCase):
    """GitHub's own ping example (tests/fixtures/github/ping_payload.json)."""

    settings: ClassVar[dict[str, Any]] = {"repository": "Octocoders/Hello-World"}

    @gen_test(timeout=60)
    async def test_real_ping_fixture(self) -> None:
        """The pretty-printed fixture, signed as sent: 200 with its zen."""
        raw = (FIXTURES / "ping_payload.json").read_bytes()
        fixture = json.loads(raw)
        assert fixture["repository"]["full_name"] == self.settings["repository"]
        status, body = await self.post(raw, "ping")
        assert status == 200, body
        assert body["result"] == "pong"
        assert body["zen"] == fixture["zen"]

    @gen_test(timeout=60)
    async def test_real_ping_fixture_other_repository_is_403(self) -> None:
        """The fixture against the default test repository name would be refused."""
        raw = (FIXTURES / "ping_payload.json").read_bytes()
        payload = json.loads(raw)
        payload["repository"]["full_name"] = "Codertocat/Hello-World"
        status, body = await self.post(payload, "ping")
        assert status == 403, body
        assert "Octocoders/Hello-World" in body["reason"]
        assert "Codertocat/Hello-World" in body["reason"]
