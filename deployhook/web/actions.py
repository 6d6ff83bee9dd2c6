"""The status page's buttons: ``POST <page_path>targets/<name>/redeploy``, ``/pause`` and
``/resume``; and ``/rollback`` (releases mode), whose ``GET ?release=NAME`` asks to
confirm (what will happen, and the form that does it) and whose ``POST`` does it.

The same access check as the pages (the status login; ``status_access = "loopback"``
too).  A GET never changes anything.  Every POST must carry the ``_xsrf`` form field
that matches the ``_xsrf`` cookie (Tornado's XSRF protection; the pages' forms include
it): without it, or with a wrong one, 403 and nothing changes.  These handlers check it
in ``prepare()`` themselves rather than through the application's ``xsrf_cookies``
setting, which checks every POST of the application, the webhooks' too (a forge sends
no token), and which a host application that mounts :func:`~deployhook.web.app.routes`
may not set: here the check goes wherever the buttons go, and nowhere else.

After a POST, 303 to the page that shows the new run or state (the status page with
one target, else the target's page).  What each button does is
:class:`~deployhook.service.actions.Actions`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import tornado.web

from deployhook.service.target import only_target
from deployhook.settings import TARGET_NAME
from deployhook.web.pages import PageHandler

if TYPE_CHECKING:
    from deployhook.service.target import Target


class ActionHandler(PageHandler):
    """Base of the buttons' handlers: the pages' access check, then on a POST the XSRF
    check (403 without a valid token)."""

    def prepare(self) -> None:
        super().prepare()  # the access check: 401, 403, 429
        if self.request.method == "POST":
            self.check_xsrf_cookie()

    def home(self) -> str:
        return "../../"

    def target(self, name: str) -> Target:
        """The target ``name``.

        Raises:
            tornado.web.HTTPError: 404 when there is none.
        """
        target = self.targets.get(name)
        if target is None:
            raise tornado.web.HTTPError(404, reason=f"no target {name}")
        return target

    def back(self, name: str) -> None:
        """303 to the page that shows target ``name``."""
        self.redirect("../../" if only_target(self.targets) is not None else f"../{name}",
                      status=303)


class Redeploy(ActionHandler):
    """``POST targets/<name>/redeploy``: queue a deploy of the newest commit (409 when no
    branch is known yet)."""

    def post(self, name: str) -> None:
        target = self.target(name)
        try:
            self.actions.redeploy(target, self.access.who(self.request))
        except LookupError as exc:
            raise tornado.web.HTTPError(409, reason=str(exc)) from None
        self.back(name)


class Pause(ActionHandler):
    """``POST targets/<name>/pause``: pause deploys (409 when the pause file cannot be
    written)."""

    async def post(self, name: str) -> None:
        target = self.target(name)
        try:
            await self.actions.pause(target, self.access.who(self.request))
        except OSError as exc:
            raise tornado.web.HTTPError(409, reason=f"cannot pause: {exc}") from None
        self.back(name)


class Resume(ActionHandler):
    """``POST targets/<name>/resume``: resume deploys (409 when the pause file cannot be
    removed)."""

    async def post(self, name: str) -> None:
        target = self.target(name)
        try:
            await self.actions.resume(target, self.access.who(self.request))
        except OSError as exc:
            raise tornado.web.HTTPError(409, reason=f"cannot resume: {exc}") from None
        self.back(name)


class Rollback(ActionHandler):
    """``GET targets/<name>/rollback?release=NAME``: the confirmation; ``POST`` (field
    ``release``): switch ``current`` back to it.  400 naming why for a target outside
    releases mode, a missing, unknown or live release."""

    async def get(self, name: str) -> None:
        target = self.target(name)
        chosen, live = await self.chosen(target, self.get_query_argument("release", ""))
        self.render("confirm.html", name=name, release=chosen, live=live,
                    back="../../" if only_target(self.targets) is not None else f"../{name}")

    async def post(self, name: str) -> None:
        target = self.target(name)
        chosen, _ = await self.chosen(target, self.get_body_argument("release", ""))
        self.actions.roll_back(target, chosen, self.access.who(self.request))
        self.back(name)

    async def chosen(self, target: Target, release: str) -> tuple[Any, Any]:
        """(the release named ``release``, the live one).

        Raises:
            tornado.web.HTTPError: 400 naming why it cannot be rolled back to.
        """
        if not release:
            raise tornado.web.HTTPError(400, reason="release must name the release to "
                                        "roll back to")
        try:
            return await self.actions.release(target, release)
        except LookupError as exc:
            raise tornado.web.HTTPError(400, reason=str(exc)) from None


def action_routes(page_path: str, kwargs: dict[str, Any]) -> list[tuple[str, Any, dict[str, Any]]]:
    """URL specs of the buttons below ``page_path`` (``targets/<name>/<action>``), each
    handler given ``kwargs`` (the pages' own, with ``actions``)."""
    base = page_path if page_path.endswith("/") else page_path + "/"
    target = base + f"targets/({TARGET_NAME.pattern})/"
    return [(target + "redeploy", Redeploy, kwargs), (target + "pause", Pause, kwargs),
            (target + "resume", Resume, kwargs), (target + "rollback", Rollback, kwargs)]
