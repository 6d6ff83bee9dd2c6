"""Atheris fuzz harness over a GitHub delivery's pure path through the daemon: the size
check, ``forges.verify``, ``parse_body``, ``forges.parse``, then ``decide_event``.

Any exception other than a DeliveryError (the typed errors that carry an HTTP status)
is a crash.  Run it (see fuzz/README.rst)::

    pip install atheris
    python fuzz/fuzz_delivery.py -runs=100000
    python fuzz/fuzz_delivery.py -max_total_time=60 CORPUS_DIR tests/fixtures/github

An input whose first byte is printable is a whole body, signed correctly and sent as
a JSON ``push`` (so GitHub's example payloads seed the corpus as they are).  Otherwise
the first byte starts a structured input: how to sign, the Content-Type, the event,
the size limit and a raw signature header are read from the data, the rest is the body.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import sys
from pathlib import Path
from urllib.parse import quote_from_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

try:
    import atheris
except ImportError:  # the harness's function stays importable without atheris
    atheris = None

if atheris is not None:
    with atheris.instrument_imports(include=["deployhook"]):
        from deployhook import forges
        from deployhook.errors import DeliveryError
        from deployhook.forges.delivery import check_size, parse_body
        from deployhook.service.rules import Deploy, decide_event
else:
    from deployhook import forges
    from deployhook.errors import DeliveryError
    from deployhook.forges.delivery import check_size, parse_body
    from deployhook.service.rules import Deploy, decide_event

from tornado.httputil import HTTPHeaders

SECRET = b"It's a Secret to Everybody"
LIMIT = 1 << 20
CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain",
                 "application/json; charset=utf-8", "", "APPLICATION/JSON", "multipart/x"]
EVENTS = ["push", "ping", "issues", "PUSH", ""]
SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
TARGETS = [("octo-org/blog", "main"), ("Codertocat/Hello-World", None), (None, None)]


def mac(body: bytes, algorithm: str) -> str:
    return f"{algorithm}={hmac.new(SECRET, body, getattr(hashlib, algorithm)).hexdigest()}"


def build(data: bytes) -> tuple[HTTPHeaders, bytes, int]:
    """Turn fuzz bytes into (headers, body, max_body_size)."""
    headers = HTTPHeaders({"X-GitHub-Delivery": "fuzz"})
    if not data or data[0] >= 0x20:
        headers["X-GitHub-Event"] = "push"
        headers["Content-Type"] = "application/json"
        headers["X-Hub-Signature-256"] = mac(data, "sha256")
        return headers, data, LIMIT
    assert atheris is not None, "structured inputs need atheris's FuzzedDataProvider"
    fdp = atheris.FuzzedDataProvider(data[1:])
    signing = fdp.ConsumeIntInRange(0, 4)
    content_type = (fdp.PickValueInList(CONTENT_TYPES) if fdp.ConsumeBool()
                    else fdp.ConsumeUnicodeNoSurrogates(40))
    event = fdp.PickValueInList(EVENTS) if fdp.ConsumeBool() else fdp.ConsumeUnicode(12)
    limit = fdp.PickValueInList([LIMIT, 0, 64])
    raw_signature = fdp.ConsumeUnicodeNoSurrogates(90)
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    if content_type.lower().startswith("application/x-www-form-urlencoded") and data[0] & 1:
        body = b"payload=" + quote_from_bytes(body).encode()
    headers["Content-Type"] = content_type
    headers["X-GitHub-Event"] = event
    if signing == 0:
        headers["X-Hub-Signature-256"] = mac(body, "sha256")
    elif signing == 1:
        headers["X-Hub-Signature"] = mac(body, "sha1")
    elif signing == 2:
        headers["X-Hub-Signature-256"] = raw_signature
    elif signing == 3:
        headers["X-Hub-Signature"] = raw_signature
    return headers, body, limit


def test_one_input(data: bytes) -> None:
    """One execution: only DeliveryError may escape verifying, parsing and deciding."""
    headers, body, limit = build(data)
    try:
        check_size(len(body), limit)
        forges.verify("github", [SECRET], headers, body)
        event = forges.parse("github", headers, parse_body(headers.get("Content-Type"), body))
        for repository, branch in TARGETS:
            try:
                decision = decide_event(event, repository, branch)
            except DeliveryError:
                continue
            if isinstance(decision, Deploy):
                push = decision.push
                assert ".." not in push.ref and not push.ref.startswith("-"), push
                assert SHA.fullmatch(push.after), push
    except DeliveryError:
        pass


def main() -> None:
    if atheris is None:
        sys.exit("atheris is not installed: pip install atheris")
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
