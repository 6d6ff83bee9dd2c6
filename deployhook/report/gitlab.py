"""GitLab's commit status API: ``POST /projects/:id/statuses/:sha`` with ``id`` the
URL-encoded ``path_with_namespace`` (state running/success/failed, ``name``)."""

from __future__ import annotations

from deployhook.report.call import FAILURE, PENDING, SUCCESS, Call, Status, json_headers, segment

API = "https://gitlab.com/api/v4"
STATES = {PENDING: "running", SUCCESS: "success", FAILURE: "failed"}


def status(api: str | None, token: str, status: Status) -> Call:
    """The commit status call (the run has started: ``running``, not ``pending``)."""
    body = {"state": STATES[status.state], "name": status.context,
            "description": status.short}
    if status.target_url:
        body["target_url"] = status.target_url
    return Call("POST", f"{api or API}/projects/{segment(status.repository)}/statuses/"
                f"{segment(status.sha)}", body, json_headers({"PRIVATE-TOKEN": token}))
