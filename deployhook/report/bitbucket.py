"""Bitbucket's build statuses.

- Cloud: ``POST /2.0/repositories/{workspace}/{slug}/commit/{sha}/statuses/build``
- Data Center / Server: ``POST /rest/build-status/1.0/commits/{sha}``

Both take state INPROGRESS/SUCCESSFUL/FAILED, a ``key`` and a required ``url``.
"""

from __future__ import annotations

from deployhook.report.call import (
    FAILURE,
    PENDING,
    SUCCESS,
    Call,
    Status,
    json_headers,
    repository_path,
    segment,
)

API = "https://api.bitbucket.org/2.0"
STATES = {PENDING: "INPROGRESS", SUCCESS: "SUCCESSFUL", FAILURE: "FAILED"}


def _body(status: Status, url: str) -> dict[str, str]:
    return {"state": STATES[status.state], "key": status.context[:40], "name": status.context,
            "url": status.target_url or url, "description": status.short}


def status(api: str | None, token: str, status: Status) -> Call:
    """The Cloud call; without ``public_url`` the link is the commit's page."""
    repository, sha = repository_path(status.repository), segment(status.sha)
    commit = f"https://bitbucket.org/{repository}/commits/{sha}"
    return Call("POST", f"{api or API}/repositories/{repository}/commit/{sha}"
                "/statuses/build", _body(status, commit),
                json_headers({"Authorization": f"Bearer {token}"}))


def server_status(api: str | None, token: str, status: Status) -> Call:
    """The Data Center call (``api``: the server's address, required)."""
    base = (api or "").rstrip("/")
    return Call("POST", f"{base}/rest/build-status/1.0/commits/{segment(status.sha)}",
                _body(status, base or "https://bitbucket.invalid"),
                json_headers({"Authorization": f"Bearer {token}"}))
