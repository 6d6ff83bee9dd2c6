"""ssh for git: the ``GIT_SSH_COMMAND`` a checkout uses, the host of an ssh remote, and
why ssh failed (its own line in a git command's output).

Pure: no process is started here.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

_SSH_URL = re.compile(
    r"^(?:ssh|git\+ssh|ssh\+git)://(?:(?P<user>[^@/]*)@)?"
    r"(?P<host>\[[^\]/]+\]|[^:/]+)(?::(?P<port>\d*))?(?:/|$)")
_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/:]*)@)?(?P<host>\[[^\]/]+\]|[^:/\[\]]+):(?!//)")


@dataclass(frozen=True)
class SshRemote:
    """Where an ssh remote connects: ``user@host`` (user may be None) and the port
    (None: ssh's own choice, 22 unless its config says otherwise)."""

    user: str | None
    host: str
    port: int | None

    @property
    def destination(self) -> str:
        """``user@host`` as ssh takes it."""
        return f"{self.user}@{self.host}" if self.user else self.host

    def known_hosts_name(self, port: int = 22) -> str:
        """The host as ``known_hosts`` names it: ``host``, or ``[host]:port`` off port 22."""
        return self.host if port == 22 else f"[{self.host}]:{port}"


def ssh_remote(url: str | None) -> SshRemote | None:
    """The ssh destination of a git remote URL (``ssh://user@host:port/path`` or the
    scp-like ``user@host:path``), or None for any other transport or a local path."""
    url = url or ""
    match = _SSH_URL.match(url)
    if match:
        port = match.group("port")
        return SshRemote(match.group("user") or None, _unbracket(match.group("host")),
                         int(port) if port else None)
    if "://" in url or url.startswith("/") or url.startswith("."):
        return None
    match = _SCP_LIKE.match(url)
    if not match or re.match(r"^[A-Za-z]:[/\\]", url):  # C:/ on Windows
        return None
    host = match.group("host")
    if host.startswith("[") and ":" in host:  # [host:port]:path
        name, _, port = host[1:-1].rpartition(":")
        if port.isdigit():
            return SshRemote(match.group("user") or None, name, int(port))
    return SshRemote(match.group("user") or None, _unbracket(host), None)


def _unbracket(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def ssh_command(timeout: float, key: str | None = None, own: str | None = None) -> str:
    """The ``GIT_SSH_COMMAND`` for a checkout: the operator's own command ``own`` when
    set, else ssh in batch mode (never prompts) with a connect timeout; with ``key``,
    followed by ``-i KEY -o IdentitiesOnly=yes`` (the key path shell-quoted: git runs
    the command through a shell), so that only that deploy key is offered."""
    command = own or f"ssh -o BatchMode=yes -o ConnectTimeout={max(1, int(timeout))}"
    if key:
        command += f" -i {shlex.quote(key)} -o IdentitiesOnly=yes"
    return command


# ssh's own lines, the most telling first (a changed host key before the "Host key
# verification failed." that follows it, a key open to others before the refusal that
# follows it): what the line holds, what it means and what to do.
_SSH_CAUSES = (
    ("REMOTE HOST IDENTIFICATION HAS CHANGED",
     "the server's host key differs from the one in known_hosts: a reinstalled server, or "
     "someone in the middle; compare the fingerprints before replacing it"),
    ("Host key verification failed",
     "the server's host key is not in known_hosts: run deployhook check"),
    ("UNPROTECTED PRIVATE KEY FILE",
     "ssh ignores a key with bad permissions, open to others: chmod 600 ssh_key"),
    ("Bad owner or permissions",
     "ssh refuses a configuration file others can write: chown it to this user, chmod 600"),
    ("no such identity", "the ssh_key file is missing"),
    ("Load key", "ssh cannot read the key file"),
    ("Permission denied",
     "the server refused the key: add ssh_key's public key to the repository's deploy keys"),
    ("Could not resolve hostname", "the remote's host name does not resolve"),
    ("Connection refused", "nothing listens on the remote's ssh port"),
    ("Connection timed out", "the remote's ssh port does not answer"),
    ("ssh: ", ""),
)


def ssh_failure(output: str) -> str | None:
    """Why ssh failed, from the output of a git command that ran it: ``ssh: <ssh's own
    line> (<what it means and what to do>)``, the most telling line when ssh wrote
    several; None when no line of ssh's is there.  Pure."""
    lines = [line.strip().strip("@").strip() for line in output.splitlines()]
    for words, meaning in _SSH_CAUSES:
        said = next((line for line in lines if words in line), None)
        if said is not None:
            said = said if said.startswith("ssh: ") else f"ssh: {said}"
            return f"{said} ({meaning})" if meaning else said
    return None
