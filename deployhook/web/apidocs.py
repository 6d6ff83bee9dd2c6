"""The API's description: ``GET /openapi.json`` and a readable page of it at ``/docs``.

The OpenAPI 3.1 document is kept in the package (``openapi.json``, next to this
module); the daemon serves it with ``webhook_path`` set to the configured path.
``/docs`` is Swagger UI from the ``swagger-ui-py`` package's files, served by the
daemon itself (``/docs/swagger-ui-bundle.js``, ``/docs/swagger-ui.css``,
``/docs/docs.js``): nothing comes from a CDN, and the page's Content-Security-Policy
allows scripts, styles and requests from this server only.  All of it is under the
API's access rule (:class:`~deployhook.web.api.RecordAccess`).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tornado.web

from deployhook.web.api import RecordAccess
from deployhook.web.handlers import JSONHandler

if TYPE_CHECKING:
    from deployhook.service.current import Current
    from deployhook.service.target import Target
    from deployhook.web.access import Access

HERE = Path(__file__).parent
DOCUMENT = HERE / "openapi.json"
DOCUMENTED_WEBHOOK_PATH = "/github"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>deployhook API</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-spec="openapi.json"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/docs.js"></script>
</body>
</html>
"""
ASSETS = {  # name under /docs/ -> (file, content type)
    "swagger-ui-bundle.js": ("swagger_ui", "application/javascript; charset=utf-8"),
    "swagger-ui.css": ("swagger_ui", "text/css; charset=utf-8"),
    "docs.js": ("deployhook", "application/javascript; charset=utf-8"),
}


@functools.cache
def document() -> dict[str, Any]:
    """The packaged OpenAPI document (read once).

    Raises:
        OSError, ValueError: the package's ``openapi.json`` is missing or not JSON.
    """
    return json.loads(DOCUMENT.read_text(encoding="utf-8"))


def served_document(webhook_path: str, targets: list[str]) -> dict[str, Any]:
    """The document as this daemon serves it: the forge-generic webhook path at
    ``webhook_path``, and every ``target`` parameter one of ``targets``."""
    doc = copy.deepcopy(document())
    doc["paths"] = {webhook_path if path == DOCUMENTED_WEBHOOK_PATH else path: item
                    for path, item in doc["paths"].items()}
    for item in doc["paths"].values():
        for operation in (item, *(v for v in item.values() if isinstance(v, dict))):
            for parameter in operation.get("parameters", ()):
                if parameter["name"] == "target":
                    parameter["schema"] = {"type": "string", "enum": targets}
    return doc


def swagger_ui_files() -> Path | None:
    """The ``static`` folder of the installed ``swagger_ui`` package (not imported),
    or None when it is not installed."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@functools.cache
def asset(name: str) -> bytes:
    """The bytes of one of :data:`ASSETS` (read once).

    Raises:
        OSError: the file is missing (``swagger-ui-py`` not installed).
    """
    package, _ = ASSETS[name]
    folder = HERE if package == "deployhook" else swagger_ui_files()
    if folder is None:
        raise FileNotFoundError(f"the {package} package is not installed")
    return (folder / name).read_bytes()


class OpenAPIHandler(RecordAccess, JSONHandler):
    """``GET /openapi.json``: the API's OpenAPI 3.1 document."""

    def initialize(self, current: Current, targets: Mapping[str, Target],
                   access: Access) -> None:
        self.current, self.targets, self.access = current, targets, access

    def get(self) -> None:
        self.reply(200, served_document(self.current.config.webhook_path, list(self.targets)))


class DocsHandler(RecordAccess, JSONHandler):
    """``GET /docs``: Swagger UI over ``/openapi.json``, all files from this server."""

    def initialize(self, access: Access) -> None:
        self.access = access

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "no-referrer")

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(PAGE)


class DocsAssetHandler(DocsHandler):
    """``GET /docs/<file>``: Swagger UI's script and style sheet, and ``docs.js``."""

    async def get(self, name: str) -> None:  # type: ignore[override]
        if name not in ASSETS:
            raise tornado.web.HTTPError(404, reason="not found")
        try:
            body = await asyncio.get_running_loop().run_in_executor(None, asset, name)
        except OSError:
            raise tornado.web.HTTPError(
                503, reason="the API page needs the swagger-ui-py package") from None
        self.set_header("Content-Type", ASSETS[name][1])
        self.set_header("Cache-Control", "private, max-age=3600")
        self.finish(body)
