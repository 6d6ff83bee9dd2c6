"""Atheris fuzz harness over deployhook.forges: detect, verify, parse_body, parse.

Any exception other than a DeliveryError is a crash, and so is a push that carries
an unsafe ref or a non-hex SHA.  Run it like fuzz_delivery.py::

    python fuzz/fuzz_forges.py -max_total_time=60 CORPUS_DIR tests/fixtures/gitlab

An input whose first byte is printable is a whole body, sent as a push of every
forge and signed as each forge signs it (so the forges' real payloads seed the
corpus as they are).  Otherwise the first byte picks a forge and the rest gives
an event name, a raw authentication header and the body.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

try:
    import atheris
except ImportError:  # the harness's function stays importable without atheris
    atheris = None

if atheris is not None:
    with atheris.instrument_imports(include=["deployhook"]):
        from deployhook import forges
        from deployhook.errors import DeliveryError
        from deployhook.forges.delivery import parse_body
else:
    from deployhook import forges
    from deployhook.errors import DeliveryError
    from deployhook.forges.delivery import parse_body

SECRETS = [b"another secret", b"It's a Secret to Everybody"]
SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
AUTH = {"github": "X-Hub-Signature-256", "gitlab": "X-Gitlab-Token",
        "gitea": "X-Gitea-Signature", "forgejo": "X-Forgejo-Signature",
        "gogs": "X-Gogs-Signature", "bitbucket": "X-Hub-Signature",
        "bitbucket-server": "X-Hub-Signature"}
EVENTS = ["push", "tag", "ping", "delete", "Push Hook", "System Hook", "repo:push",
          "repo:refs_changed", "diagnostics:ping", "issues"]


def handle(forge: str, headers: dict[str, str], body: bytes, signed: bool,
           named: bool = True) -> None:
    """What a handler does with one request; only DeliveryError may escape.

    A delivery ``signed`` as ``forge`` signs, whose event header is not blank
    (``named``), must be detected as coming from ``forge`` and verify.
    """
    try:
        assert not (signed and named) or forges.detect(headers) == forge, (forge, headers)
        assert forges.verify(forge, SECRETS, headers, body) == 1 or not signed
        event = forges.parse(forge, headers, parse_body(headers.get("Content-Type"), body))
    except DeliveryError:
        return
    if isinstance(event, forges.Pushes):
        for push in event.changes:
            assert forges.events.safe_ref(push.ref), push
            assert SHA.fullmatch(push.before) and SHA.fullmatch(push.after), push


def test_one_input(data: bytes) -> None:
    """One execution: a signed body for every forge, or one structured request."""
    if not data or data[0] >= 0x20:
        for forge in forges.FORGES:
            handle(forge, forges.sign_headers(forge, SECRETS[1], data, delivery_id="f"),
                   data, signed=True)
        return
    assert atheris is not None, "structured inputs need atheris's FuzzedDataProvider"
    forge = forges.FORGES[data[0] % len(forges.FORGES)]
    fdp = atheris.FuzzedDataProvider(data[1:])
    event = fdp.PickValueInList(EVENTS) if fdp.ConsumeBool() else fdp.ConsumeUnicode(12)
    raw_auth = fdp.ConsumeUnicodeNoSurrogates(90)
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    headers = forges.sign_headers(forge, SECRETS[1], body, event, delivery_id="f")
    if raw_auth:
        headers[AUTH[forge]] = raw_auth
    handle(forge, headers, body, signed=not raw_auth, named=bool(event.strip()))


def main() -> None:
    if atheris is None:
        sys.exit("atheris is not installed: pip install atheris")
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
