"""GitHub's REST API: commit statuses and Deployments.

- ``POST /repos/{owner}/{repo}/statuses/{sha}`` (state error/failure/pending/success)
- ``POST /repos/{owner}/{repo}/deployments``, then
  ``POST /repos/{owner}/{repo}/deployments/{id}/statuses`` (in_progress/success/failure)
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

API = "https://api.github.com"
STATES = {PENDING: "pending", SUCCESS: "success", FAILURE: "failure"}
DEPLOYMENT_STATES = {PENDING: "in_progress", SUCCESS: "success", FAILURE: "failure"}


def headers(token: str) -> dict[str, str]:
    return {**json_headers({"Authorization": f"Bearer {token}"}),
            "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


def status(api: str | None, token: str, status: Status) -> Call:
    """The commit status call."""
    body = {"state": STATES[status.state], "context": status.context,
            "description": status.short}
    if status.target_url:
        body["target_url"] = status.target_url
    return Call("POST", f"{api or API}/repos/{repository_path(status.repository)}/statuses/"
                f"{segment(status.sha)}", body, headers(token))


def deployment(api: str | None, token: str, status: Status, environment: str) -> Call:
    """The call that creates a Deployment of ``status.sha`` to ``environment``; its answer's
    ``id`` is what :func:`deployment_status` needs."""
    body = {"ref": status.sha, "environment": environment, "required_contexts": [],
            "auto_merge": False, "description": status.short}
    return Call("POST", f"{api or API}/repos/{repository_path(status.repository)}/deployments",
                body, headers(token))


def deployment_status(api: str | None, token: str, status: Status, deployment_id: int) -> Call:
    """A Deployment's new state (in_progress, success or failure)."""
    body = {"state": DEPLOYMENT_STATES[status.state], "description": status.short}
    if status.target_url:
        body["log_url"] = status.target_url
    return Call("POST", f"{api or API}/repos/{repository_path(status.repository)}/"
                f"deployments/{segment(deployment_id)}/statuses", body, headers(token))
