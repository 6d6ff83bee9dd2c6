"""Gitea's and Forgejo's commit status API: ``POST /repos/{owner}/{repo}/statuses/{sha}``
(state pending/success/failure/error, ``context``)."""

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

APIS = {"gitea": "https://gitea.com/api/v1", "forgejo": "https://codeberg.org/api/v1"}
STATES = {PENDING: "pending", SUCCESS: "success", FAILURE: "failure"}


def status(api: str | None, token: str, status: Status, forge: str = "gitea") -> Call:
    """The commit status call."""
    body = {"state": STATES[status.state], "context": status.context,
            "description": status.short}
    if status.target_url:
        body["target_url"] = status.target_url
    return Call("POST", f"{api or APIS[forge]}/repos/{repository_path(status.repository)}/"
                f"statuses/{segment(status.sha)}", body,
                json_headers({"Authorization": f"token {token}"}))
