"""What each configuration key means: one sentence or three per key of
:data:`deployhook.settings.KEYS`, in reStructuredText (inline literals only).

The documentation's configuration reference (``docs/configuration.rst``, and the
``deployhook.conf(5)`` man page) is generated from the settings themselves: each
key's type and default from :class:`deployhook.settings.Config`, whether a target
may set it from :data:`deployhook.settings.TARGET_KEYS`, and its meaning from
:data:`DESCRIPTIONS` here.  ``tests/test_docs.py`` checks that every key has a
description and that no description names a key that does not exist.
"""

from __future__ import annotations

DESCRIPTIONS: dict[str, str] = {
    # Where to listen and what to answer.
    "address": "Address to listen on (ignored under socket activation).",
    "port": "Port to listen on.",
    "webhook_path": (
        "A second webhook URL that routes each delivery by its repository to every "
        "matching target (every target also answers at ``/hooks/<name>``)."),
    "secret_file": (
        "File holding the webhook secrets, one per line, each accepted (lines starting "
        "with ``#`` are comments); re-read when it changes, so rotating needs no restart. "
        "Under systemd, when set nowhere: ``$CREDENTIALS_DIRECTORY/webhook-secret``."),
    # The checkout.
    "repo_path": "The checkout to keep in step.",
    "remote": "Remote to fetch from.",
    "branch": (
        "Branch to deploy; ``None``: the checkout's current branch (before a first "
        "clone: the repository's default branch)."),
    "submodules": "Run ``git submodule update --init --recursive`` after each update.",
    "pull_strategy": (
        "How to update: ``ff-only`` (fast-forward only), ``merge``, ``rebase`` or "
        "``reset`` (the only one that discards local commits and changes)."),
    "repo_url": "Clone from here when ``repo_path`` does not exist yet.",
    "repository": (
        "The ``owner/name`` whose deliveries are accepted; ``None``: taken from the "
        "remote's URL when it is a GitHub URL, else any repository signed with the "
        "secret (a warning is logged)."),
    "post_deploy": (
        "Command run in the checkout after an update that moved HEAD, as an argument "
        "list (no shell); a failure fails the deploy and skips the reload."),
    "post_deploy_timeout": "Seconds ``post_deploy`` may run; then its whole process group "
                           "is killed.",
    "pre_deploy": (
        "Command run in the checkout (in releases mode: the live release) before an "
        "update (not before a first clone), as an argument list (no shell), with "
        "``post_deploy``'s environment; if it fails the deploy stops (500, its reason) and "
        "HEAD, the work tree and ``current`` stay as they were."),
    "pre_deploy_timeout": "Seconds ``pre_deploy`` may run; then its whole process group "
                          "is killed.",
    "on_failure": (
        "Command run after any failed run (argument list, no shell), with the reason in "
        "``DEPLOYHOOK_REASON``; its own failure is only recorded (a step of the run)."),
    "on_failure_timeout": "Seconds ``on_failure`` may run; then its whole process group "
                          "is killed.",
    "reload": (
        "After a deploy that moved HEAD: ``auto`` (re-execute when the checkout holds "
        "the code the process runs, else nothing), ``autoreload`` (always re-execute, "
        "keeping the PID and the listening sockets), ``exit`` (exit 0 for a supervisor "
        "to restart) or ``none``."),
    "response_timeout": (
        "Seconds to wait for a deploy before answering ``202 deploying`` (GitHub gives "
        "up after 10)."),
    "git_timeout": (
        "Seconds before any git command (fetch, clone, merge, rebase, submodule update, "
        "and the hooks git runs) is killed with its children."),
    "lock_timeout": (
        "Seconds to wait while another deploy (the daemon or ``deployhook deploy``) "
        "holds the checkout."),
    "max_body_size": "Largest webhook body, in bytes (26 MiB; GitHub caps payloads at "
                     "25 MB).",
    "workers": "Threads for git work: at most this many targets deploy at once.",
    "stop_timeout": "On SIGTERM, seconds to let a running deploy finish.",
    # The record and who may read it.
    "state_db": "The deployment record, an SQLite file (created mode 0600).",
    "keep_runs": "Runs kept in the record for each target, newest first.",
    "keep_days": "Runs older than this many days are pruned.",
    "status_access": (
        "Who may read the record (status page, API, ``/metrics``, ``/health``'s "
        "details): ``password``, or ``loopback`` (this machine without a password, "
        "never behind a proxy on the same machine)."),
    "status_user": "User name for the status page and the API.",
    "status_password_file": (
        "File holding their password (``deployhook init`` writes one); under systemd, "
        "when set nowhere: ``$CREDENTIALS_DIRECTORY/status-password``."),
    "allowed_hosts": (
        "Extra ``Host`` names that ``loopback`` access accepts besides ``localhost`` and "
        "loopback addresses."),
    "allowed_networks": "CIDRs allowed to POST deliveries; empty: any.",
    "trusted_proxies": "Proxies (CIDRs) whose ``X-Forwarded-For`` is believed.",
    "log_level": "``debug``, ``info``, ``warning`` or ``error``.",
    # What strangers can cost.
    "max_connections": (
        "Open connections; at the cap the oldest idle one (then the oldest unverified "
        "one) is closed to make room; lowered at start-up to fit the open-files limit "
        "(the default fits ``LimitNOFILE=1024``)."),
    "idle_timeout": (
        "Seconds a connection may take to send a request's headers (or stay idle between "
        "requests)."),
    "body_timeout": "Seconds a request may take to send its body.",
    "unverified_memory": (
        "Bytes (16 MiB by default) of not-yet-verified bodies held in memory across all "
        "connections; bodies over 256 KiB or past this go to a temporary file."),
    "unverified_disk": (
        "Bytes (1 GiB by default) of not-yet-verified bodies in temporary files; past it, "
        "reading waits for room."),
    "refused_delay": (
        "Seconds a sender waits for each wrong-signature answer once it has had 20 "
        "refusals in a minute (0: answer at once)."),
    # Forges.
    "ssh_key": (
        "A private deploy key for this checkout's ssh remote, used alone "
        "(``IdentitiesOnly``)."),
    "forge": (
        "``github``, ``gitlab``, ``gitea``, ``forgejo``, ``gogs``, ``bitbucket`` or "
        "``bitbucket-server``; ``None``: detected from the delivery's headers."),
    "tags": (
        "A pattern such as ``v*``: deploy the newest pushed tag matching it (detached) "
        "instead of a branch."),
    "report": (
        "``status``: set a commit status on each pushed commit; ``deployment`` (GitHub): "
        "a Deployment; needs ``forge`` (not ``gogs``)."),
    "report_token_file": (
        "File holding the forge API token for ``report`` (one line; ``#`` lines are "
        "comments); under systemd, when unset: "
        "``$CREDENTIALS_DIRECTORY/report-token-<target>``."),
    "api_url": "The forge's API; ``None``: the public one (set it for a self-hosted forge).",
    "public_url": (
        "Where the status pages are reachable, e.g. ``https://deploy.example.com``: the "
        "forge links each status to ``<public_url>/runs/<id>``."),
    "notify": (
        "Apprise URLs (``slack://…``, ``matrixs://…``, ``ntfys://…``, ``mailtos://…``, …) "
        "told of the runs ``notify_on`` names, in the background; needs "
        "``deployhook[notify]``.  They hold tokens: never logged, recorded or shown."),
    "notify_on": (
        "Which runs ``notify`` tells of: ``failure``, ``recovery`` (a success after a "
        "failed run) and ``success`` (every successful run, recoveries included)."),
    "targets": (
        "Several checkouts in one daemon: a dict from a target's name to its settings "
        "(the keys marked *per target*); empty: one target, ``default``, from the "
        "top-level keys."),
    # Atomic releases.
    "deploy_mode": "``in-place`` (update ``repo_path``) or ``releases`` (atomic releases).",
    "releases_path": (
        "Releases mode: the folder holding ``current``, ``releases/`` and ``shared/`` "
        "(required there)."),
    "health_url": (
        "Releases mode: fetched after each switch; not 2xx within ``health_timeout``: "
        "rolled back."),
    "health_timeout": "Seconds for ``health_url`` to answer.",
    "activate": (
        "Releases mode: a command (argument list) run after each switch; failing: rolled "
        "back."),
    "shared_paths": (
        "Releases mode: paths (e.g. ``uploads``, ``.env``) linked into every release from "
        "``releases_path/shared/``."),
    "keep_releases": (
        "Releases mode: releases kept (at least 2; the live one and the one before it "
        "always are)."),
    "fleet_switch": (
        "Releases mode in a fleet: ``\"together\"``: every node builds the release, and "
        "all switch ``current`` once every live node has built it (none does when one "
        "fails); ``\"each\"``: each node switches as soon as its own release is built."),
    "poll_interval": (
        "Seconds between asks of the remote (``git ls-remote``) for the deployed branch's "
        "tip (or newest matching tag), jittered by ±10%; a tip no delivery brought is "
        "deployed (trigger ``poll``).  ``0``: never poll."),
    # Fleet mode.
    "redis_url": (
        "Fleet mode: the Redis every server shares, e.g. ``redis://10.0.0.5:6379/0`` "
        "(``rediss://`` for TLS); ``None``: one server, no Redis at all."),
    "redis_password_file": (
        "File holding Redis's password; under systemd, when unset: "
        "``$CREDENTIALS_DIRECTORY/redis-password``."),
    "redis_ca_file": (
        "With a ``rediss://`` ``redis_url``: the CA certificate (PEM) that signed Redis's "
        "certificate; ``None``: the system's CAs."),
    "fleet_key_file": (
        "File holding the fleet key every node signs what it writes to Redis with (the "
        "same on every node; Redis never sees it); required with ``redis_url``; under "
        "systemd, when unset: ``$CREDENTIALS_DIRECTORY/fleet-key``.  ``deployhook init`` "
        "writes one."),
    "node": "This server's name in the fleet; ``None``: the host name (its first label).",
    "reconcile_interval": (
        "Fleet mode: seconds between checks of this server's checkout against the desired "
        "commit (under 5: also between its heartbeats)."),
}
