"""Build the push and ping payloads each forge sends, for ``deployhook send`` and tests.

Pure functions: no I/O, no randomness (ids come from the names), the clock
only when ``now`` is None.  Each payload has the keys and nesting of the
forge's real delivery (the fixtures in ``tests/fixtures/<forge>/``, copied from
octokit/webhooks and go-playground/webhooks) as far as deployhook or a typical
consumer reads them; the :mod:`deployhook.forges` parsers read them back.

How a ref change is spelt per forge:

- a tag is ``ref`` ``refs/tags/<name>``; a deletion is ``after`` all zeros;
- GitHub and GitLab send a push either way (GitLab's tag push is ``tag_push``);
- Gitea, Forgejo and Gogs send a deletion as a ``delete`` event (short ref,
  ``ref_type``), so :func:`event_name` says which event to sign it as;
- Bitbucket Cloud puts the change in ``push.changes[]`` (``new`` null when
  deleted, ``old`` null when created); Data Center in ``changes[]`` with
  ``type`` ADD, UPDATE or DELETE and ``repository.project.key``/``slug``.

``commits`` (oldest first) are dicts in the neutral form ``{"id", "message",
"timestamp", "author": {"name", "email"}, "committer": {...}, "added",
"removed", "modified"}`` (what ``deployhook send`` reads from git); each
builder converts them to its forge's spelling.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from deployhook.forges.delivery import ZERO_SHA
from deployhook.forges.events import BRANCH_PREFIX, TAG_PREFIX
from deployhook.redact import redact

ZEN = ("Design for failure.", "Keep it logically awesome.", "Speak like a human.",
       "Non-blocking is better than blocking.", "Anything added dilutes everything else.",
       "Approachable is better than simple.", "Mind your words, they are important.",
       "Practicality beats purity.", "Avoid administrative distraction.")
# Where each forge's URLs point: the public instance (Data Center has none).
HOSTS = {"github": "https://github.com", "gitlab": "https://gitlab.com",
         "gitea": "https://gitea.com", "forgejo": "https://codeberg.org",
         "gogs": "https://try.gogs.io", "bitbucket": "https://bitbucket.org",
         "bitbucket-server": "https://bitbucket.example.com"}
_GITEA_FAMILY = ("gitea", "forgejo", "gogs")


def stable_id(text: str) -> int:
    """A positive id that stays the same for the same text (across runs)."""
    return int.from_bytes(uuid.uuid5(uuid.NAMESPACE_URL, text).bytes[:4], "big") % 10**9 + 1


def event_name(forge: str, *, ref: str, after: str) -> str:
    """The ``event`` to pass to :func:`deployhook.forges.sign_headers` for this change.

    ``delete`` for a deletion on Gitea, Forgejo and Gogs (they send no push
    then), ``tag`` for a tag ref (GitLab's ``Tag Push Hook``), else ``push``.

    Raises:
        ValueError: ``forge`` is not a known forge.
    """
    _check(forge)
    if forge in _GITEA_FAMILY and after == ZERO_SHA:
        return "delete"
    return "tag" if ref.startswith(TAG_PREFIX) else "push"


def push_payload(forge: str, *, repository: str, ref: str, before: str, after: str,
                 pusher: str, email: str, default_branch: str,
                 commits: list[dict[str, Any]] | None = None,
                 now: float | None = None) -> dict[str, Any]:
    """The payload ``forge`` sends when ``ref`` moves from ``before`` to ``after``.

    ``repository`` is ``owner/name`` (GitLab: ``group/sub/name``; Data Center:
    ``PROJECTKEY/slug``).  ``before`` all zeros is a creation, ``after`` all
    zeros a deletion (Gitea/Forgejo/Gogs: a ``delete`` event payload).  ``now``
    (Unix seconds, default the clock) dates the payload.

    Raises:
        ValueError: ``forge`` is not a known forge, or ``ref`` is not a full
            ``refs/heads/`` or ``refs/tags/`` ref.
    """
    _check(forge)
    if not ref.startswith((BRANCH_PREFIX, TAG_PREFIX)):
        raise ValueError(f"ref must start with {BRANCH_PREFIX} or {TAG_PREFIX}: {ref!r}")
    change = _Change(forge, repository, ref, before, after, pusher, email, default_branch,
                     list(commits or []), time.time() if now is None else now)
    return _BUILDERS[forge](change)


def ping_payload(forge: str, *, repository: str, url: str, default_branch: str,
                 now: float | None = None, hook_id: int | None = None,
                 sender: str | None = None) -> dict[str, Any] | None:
    """The payload of ``forge``'s "test this hook" delivery, or None when it sends a push.

    GitHub's ``ping`` (sent when a hook is created) and Data Center's
    ``diagnostics:ping`` ("Test connection") exist; GitLab, Gitea, Forgejo,
    Gogs and Bitbucket Cloud test a hook with a push, so they give None.
    ``url`` is the hook's URL (credentials in it are redacted); ``now`` (Unix
    seconds, default the clock) dates the payload.  GitHub's ``hook_id`` (what
    ``X-GitHub-Hook-ID`` says) defaults to one derived from ``url``; ``sender``
    to the repository's owner.

    Raises:
        ValueError: ``forge`` is not a known forge.
    """
    _check(forge)
    if forge == "bitbucket-server":
        return {"test": True}
    if forge != "github":
        return None
    hook_id = stable_id(f"hook {redact(url)}") if hook_id is None else hook_id
    api = f"https://api.github.com/repos/{repository}/hooks/{hook_id}"
    now = time.time() if now is None else now
    stamp = _iso(now)
    owner = repository.partition("/")[0]
    return {
        "zen": ZEN[hook_id % len(ZEN)], "hook_id": hook_id,
        "hook": {
            "type": "Repository", "id": hook_id, "name": "web", "active": True,
            "events": ["push"],
            "config": {"content_type": "json", "insecure_ssl": "0", "url": redact(url)},
            "updated_at": stamp, "created_at": stamp, "url": api, "test_url": api + "/test",
            "ping_url": api + "/pings", "deliveries_url": api + "/deliveries",
            "last_response": {"code": None, "status": "unused", "message": None},
        },
        "repository": _github_repository(repository, default_branch, now),
        "sender": _github_user(sender or owner),
    }


# -- shared ---------------------------------------------------------------------------------------
class _Change:
    """The arguments of one :func:`push_payload` call and what follows from them."""

    def __init__(self, forge: str, repository: str, ref: str, before: str, after: str,
                 pusher: str, email: str, default_branch: str, commits: list[dict[str, Any]],
                 now: float) -> None:
        self.forge, self.repository, self.ref = forge, repository, ref
        self.before, self.after, self.pusher, self.email = before, after, pusher, email
        self.default_branch, self.now = default_branch, now
        self.deleted, self.created = after == ZERO_SHA, before == ZERO_SHA
        self.commits = [] if self.deleted else commits
        self.tag = ref.startswith(TAG_PREFIX)
        self.short = ref.removeprefix(TAG_PREFIX if self.tag else BRANCH_PREFIX)
        self.owner, _, self.name = repository.rpartition("/")
        self.html = f"{HOSTS[forge]}/{repository}"


def _check(forge: str) -> None:
    if forge not in HOSTS:
        raise ValueError(f"unknown forge {forge!r}")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), UTC).isoformat()


def _commit_field(commit: dict[str, Any], name: str, default: Any = None) -> Any:
    value = commit.get(name, default)
    return list(value) if isinstance(value, list) else value


def _person(commit: dict[str, Any], role: str) -> dict[str, str]:
    person = commit.get(role) or commit.get("author") or {}
    return {"name": str(person.get("name", "")), "email": str(person.get("email", ""))}


# -- GitHub ---------------------------------------------------------------------------------------
def _github(change: _Change) -> dict[str, Any]:
    commits = [_github_commit(c, change) for c in change.commits]
    if change.created:
        compare = f"{change.html}/commit/{change.after[:12]}"
    else:
        compare = f"{change.html}/compare/{change.before[:12]}...{change.after[:12]}"
    return {
        "ref": change.ref, "before": change.before, "after": change.after,
        "created": change.created, "deleted": change.deleted, "forced": False,
        "base_ref": None, "compare": compare,
        "commits": commits, "head_commit": commits[-1] if commits else None,
        "repository": _github_repository(change.repository, change.default_branch, change.now),
        "pusher": {"name": change.pusher, "email": change.email},
        "sender": _github_user(change.pusher),
    }


def _github_repository(full_name: str, default_branch: str, now: float) -> dict[str, Any]:
    """GitHub's ``repository`` object (the fields deployhook and most tools read)."""
    owner, _, name = full_name.partition("/")
    html = f"https://github.com/{full_name}"
    return {
        "id": stable_id(full_name), "node_id": "", "name": name, "full_name": full_name,
        "private": True, "owner": {**_github_user(owner), "name": owner},
        "html_url": html, "description": None, "fork": False,
        "url": f"https://api.github.com/repos/{full_name}",
        "git_url": f"git://github.com/{full_name}.git",
        "ssh_url": f"git@github.com:{full_name}.git",
        "clone_url": f"{html}.git", "default_branch": default_branch,
        "master_branch": default_branch, "pushed_at": int(now),
    }


def _github_user(login: str) -> dict[str, Any]:
    return {"login": login, "id": stable_id(login), "node_id": "", "avatar_url": "",
            "gravatar_id": "", "url": f"https://api.github.com/users/{login}",
            "html_url": f"https://github.com/{login}", "type": "User", "site_admin": False}


def _github_commit(commit: dict[str, Any], change: _Change) -> dict[str, Any]:
    sha = str(commit.get("id", ""))
    return {
        "id": sha, "tree_id": commit.get("tree_id", ""), "distinct": commit.get("distinct", True),
        "message": str(commit.get("message", "")),
        "timestamp": commit.get("timestamp") or _iso(change.now),
        "url": f"{change.html}/commit/{sha}",
        "author": _person(commit, "author"), "committer": _person(commit, "committer"),
        "added": _commit_field(commit, "added", []),
        "removed": _commit_field(commit, "removed", []),
        "modified": _commit_field(commit, "modified", []),
    }


# -- GitLab ---------------------------------------------------------------------------------------
def _gitlab(change: _Change) -> dict[str, Any]:
    """``Push Hook`` (``object_kind`` push) or ``Tag Push Hook`` (tag_push)."""
    kind = "tag_push" if change.tag else "push"
    web = change.html
    namespace = change.owner.rpartition("/")[2] or change.owner
    project = {
        "id": stable_id(change.repository), "name": change.name, "description": "",
        "web_url": web, "avatar_url": None,
        "git_ssh_url": f"git@gitlab.com:{change.repository}.git",
        "git_http_url": f"{web}.git", "namespace": namespace, "visibility_level": 0,
        "path_with_namespace": change.repository, "default_branch": change.default_branch,
        "ci_config_path": None, "homepage": web,
        "url": f"git@gitlab.com:{change.repository}.git",
        "ssh_url": f"git@gitlab.com:{change.repository}.git", "http_url": f"{web}.git",
    }
    commits = [_gitlab_commit(c, web) for c in change.commits]
    user_id = stable_id(change.pusher)
    return {
        "object_kind": kind, "event_name": kind, "before": change.before,
        "after": change.after, "ref": change.ref, "ref_protected": not change.tag,
        "checkout_sha": None if change.deleted else change.after, "message": None,
        "user_id": user_id, "user_name": change.pusher, "user_username": change.pusher,
        "user_email": change.email, "user_avatar": "",
        "project_id": project["id"], "project": project,
        "commits": commits, "total_commits_count": len(commits), "push_options": {},
        "repository": {
            "name": change.name, "url": project["url"], "description": "",
            "homepage": web, "git_http_url": project["git_http_url"],
            "git_ssh_url": project["git_ssh_url"], "visibility_level": 0,
        },
    }


def _gitlab_commit(commit: dict[str, Any], web: str) -> dict[str, Any]:
    sha, message = str(commit.get("id", "")), str(commit.get("message", ""))
    return {
        "id": sha, "message": message, "title": message.partition("\n")[0],
        "timestamp": commit.get("timestamp"), "url": f"{web}/-/commit/{sha}",
        "author": _person(commit, "author"), "added": _commit_field(commit, "added", []),
        "modified": _commit_field(commit, "modified", []),
        "removed": _commit_field(commit, "removed", []),
    }


# -- Gitea, Forgejo, Gogs -------------------------------------------------------------------------
def _gitea(change: _Change) -> dict[str, Any]:
    """A ``push`` event, or a ``delete`` event for a deletion (short ref, ``ref_type``)."""
    repository = _gitea_repository(change)
    user = _gitea_user(change.pusher, change.email, change.forge)
    if change.deleted:
        return {"ref": change.short, "ref_type": "tag" if change.tag else "branch",
                "pusher_type": "user", "repository": repository, "sender": user}
    commits = [_gitea_commit(c, change) for c in change.commits]
    payload: dict[str, Any] = {
        "ref": change.ref, "before": change.before, "after": change.after,
        "compare_url": f"{change.html}/compare/{change.before}...{change.after}",
        "commits": commits,
    }
    if change.forge != "gogs":  # Gogs's PushPayload has neither
        payload.update({"total_commits": len(commits),
                        "head_commit": commits[-1] if commits else None})
    payload.update({"repository": repository, "pusher": user, "sender": user})
    return payload


def _gitea_user(login: str, email: str, forge: str) -> dict[str, Any]:
    host = HOSTS[forge]
    user: dict[str, Any] = {"id": stable_id(login), "login": login, "full_name": "",
                            "email": email, "avatar_url": f"{host}/avatars/{login}",
                            "username": login}
    if forge != "gogs":
        user.update({"language": "", "is_admin": False, "restricted": False,
                     "active": True, "prohibit_login": False, "visibility": "public"})
    return user


def _gitea_repository(change: _Change) -> dict[str, Any]:
    host = HOSTS[change.forge].removeprefix("https://")
    stamp = _iso(change.now)
    repository = {
        "id": stable_id(change.repository),
        "owner": _gitea_user(change.owner, "", change.forge),
        "name": change.name, "full_name": change.repository, "description": "",
        "private": True, "fork": False, "html_url": change.html,
        "ssh_url": f"git@{host}:{change.repository}.git",
        "clone_url": f"{change.html}.git", "website": "", "stars_count": 0,
        "forks_count": 0, "watchers_count": 1, "open_issues_count": 0,
        "default_branch": change.default_branch, "created_at": stamp, "updated_at": stamp,
    }
    if change.forge != "gogs":  # Gitea's api.Repository has more (Forgejo's too)
        repository.update({
            "empty": False, "template": False, "parent": None, "mirror": False, "size": 0,
            "original_url": "", "archived": False, "internal": False, "avatar_url": "",
            "permissions": {"admin": True, "push": True, "pull": True},
            "has_issues": True, "has_wiki": True, "has_pull_requests": True,
            "has_projects": True, "open_pr_counter": 0, "release_counter": 0,
            "mirror_interval": "", "mirror_updated": "0001-01-01T00:00:00Z",
            "repo_transfer": None, "ignore_whitespace_conflicts": False,
            "allow_merge_commits": True, "allow_rebase": True, "allow_rebase_explicit": True,
            "allow_squash_merge": True, "default_merge_style": "merge",
            "internal_tracker": {"enable_time_tracker": True,
                                 "allow_only_contributors_to_track_time": True,
                                 "enable_issue_dependencies": True}})
    return repository


def _gitea_commit(commit: dict[str, Any], change: _Change) -> dict[str, Any]:
    sha = str(commit.get("id", ""))
    author, committer = _person(commit, "author"), _person(commit, "committer")
    entry = {
        "id": sha, "message": str(commit.get("message", "")),
        "url": f"{change.html}/commit/{sha}",
        "author": {**author, "username": ""}, "committer": {**committer, "username": ""},
        "timestamp": commit.get("timestamp") or _iso(change.now),
        "added": _commit_field(commit, "added", []),
        "removed": _commit_field(commit, "removed", []),
        "modified": _commit_field(commit, "modified", []),
    }
    if change.forge != "gogs":
        entry["verification"] = None
    return entry


# -- Bitbucket Cloud ------------------------------------------------------------------------------
def _bitbucket(change: _Change) -> dict[str, Any]:
    """``repo:push``: one entry of ``push.changes[]``."""
    api = f"https://api.bitbucket.org/2.0/repositories/{change.repository}"
    actor = _bitbucket_user(change.pusher)
    kind = "tag" if change.tag else "branch"

    def side(sha: str) -> dict[str, Any] | None:
        if sha == ZERO_SHA:
            return None
        return {"type": kind, "name": change.short,
                "target": {"type": "commit", "hash": sha, "date": _iso(change.now),
                           "links": {"html": {"href": f"{change.html}/commits/{sha}"}}},
                "links": {"html": {"href": f"{change.html}/src/{change.short}"}}}

    commits = [{"hash": str(c.get("id", "")), "type": "commit",
                "message": str(c.get("message", "")),
                "author": {"type": "author", "raw": "{name} <{email}>".format(
                    **_person(c, "author"))},
                "date": c.get("timestamp"),
                "links": {"html": {"href": f"{change.html}/commits/{c.get('id', '')}"}}}
               for c in reversed(change.commits)]  # Bitbucket lists the newest first
    return {
        "actor": actor,
        "repository": {
            "type": "repository", "full_name": change.repository, "name": change.name,
            "uuid": f"{{{uuid.uuid5(uuid.NAMESPACE_URL, change.html)}}}",
            "scm": "git", "is_private": True,
            "links": {"self": {"href": api}, "html": {"href": change.html}},
        },
        "push": {"changes": [{
            "new": side(change.after), "old": side(change.before),
            "created": change.created, "closed": change.deleted, "forced": False,
            "links": {"html": {"href": f"{change.html}/branches/compare/"
                                       f"{change.after}..{change.before}"}},
            "commits": commits, "truncated": False,
        }]},
    }


def _bitbucket_user(nickname: str) -> dict[str, Any]:
    return {"type": "user", "nickname": nickname, "display_name": nickname,
            "account_id": str(stable_id(nickname)),
            "uuid": f"{{{uuid.uuid5(uuid.NAMESPACE_URL, 'user ' + nickname)}}}"}


# -- Bitbucket Data Center ------------------------------------------------------------------------
def _bitbucket_server(change: _Change) -> dict[str, Any]:
    """``repo:refs_changed``: ``changes[]`` with ``ref``, ``fromHash``, ``toHash``, ``type``."""
    key = change.owner or "PROJECT"
    host = HOSTS[change.forge]
    actor = {"name": change.pusher, "emailAddress": change.email,
             "id": stable_id(change.pusher), "displayName": change.pusher, "active": True,
             "slug": change.pusher, "type": "NORMAL",
             "links": {"self": [{"href": f"{host}/users/{change.pusher}"}]}}
    kind = "ADD" if change.created else "DELETE" if change.deleted else "UPDATE"
    repo_path = f"projects/{key}/repos/{change.name}"
    stamp = datetime.fromtimestamp(int(change.now), UTC).strftime("%Y-%m-%dT%H:%M:%S%z")
    return {
        "eventKey": "repo:refs_changed", "date": stamp, "actor": actor,
        "repository": {
            "slug": change.name, "id": stable_id(change.repository), "name": change.name,
            "scmId": "git", "state": "AVAILABLE", "statusMessage": "Available",
            "forkable": True,
            "project": {"key": key, "id": stable_id(key), "name": key, "public": False,
                        "type": "NORMAL",
                        "links": {"self": [{"href": f"{host}/projects/{key}"}]}},
            "public": False,
            "links": {
                "clone": [{"href": f"ssh://git@{host.removeprefix('https://')}:7999/"
                                   f"{key.lower()}/{change.name}.git", "name": "ssh"},
                          {"href": f"{host}/scm/{key.lower()}/{change.name}.git",
                           "name": "http"}],
                "self": [{"href": f"{host}/{repo_path}/browse"}],
            },
        },
        "changes": [{
            "ref": {"id": change.ref, "displayId": change.short,
                    "type": "TAG" if change.tag else "BRANCH"},
            "refId": change.ref, "fromHash": change.before, "toHash": change.after,
            "type": kind,
        }],
    }


_BUILDERS = {"github": _github, "gitlab": _gitlab, "gitea": _gitea, "forgejo": _gitea,
             "gogs": _gitea, "bitbucket": _bitbucket, "bitbucket-server": _bitbucket_server}
