"""The Reloader on a real IOLoop: it waits for the deploys, for the answers in flight (at
most the grace), and ``auto``."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import deployhook
from deployhook.service.reload import GRACE, Reloader, effective_mode, holds_running_code


class Busy:
    """Stands for DeployHook's state: a deploy running (``deploying``) and the webhook
    answers in flight (``in_flight``)."""

    def __init__(self) -> None:
        self.deploying = False
        self.in_flight = 0

    def __call__(self) -> bool:
        return self.deploying


def make(mode: str, busy: Busy, repo_path: str = ".",
         answer_grace: float = 60.0) -> tuple[Reloader, list[str]]:
    """A reloader as an embedding application's DeployHook makes it (it waits for the
    answers in flight, at most ``answer_grace``); ``fired`` lists what it did."""
    fired: list[str] = []
    reloader = Reloader(mode, busy, on_exit=lambda: fired.append("exit"),
                        on_reexec=lambda: fired.append("reexec"), repo_path=repo_path,
                        answering=lambda: busy.in_flight, answer_grace=answer_grace)
    return reloader, fired


async def fires(fired: list[str], timeout: float = 10) -> None:
    """Let the loop run until the reloader has fired.  Raises AssertionError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not fired:
        assert time.monotonic() < deadline, f"no reload in {timeout} s"
        await asyncio.sleep(0.01)


def test_waits_for_every_answer_in_flight() -> None:
    """Requested while two answers are unsent: fires only after the last one, once."""

    async def scenario() -> list[list[str]]:
        busy = Busy()
        reloader, fired = make("autoreload", busy)
        busy.in_flight = 2
        reloader.request()
        await asyncio.sleep(GRACE * 3)
        seen = [list(fired)]
        busy.in_flight = 1
        reloader.poke()
        await asyncio.sleep(GRACE * 3)
        seen.append(list(fired))
        busy.in_flight = 0
        reloader.poke()
        reloader.poke()  # two answers ending together: still one reload
        await fires(fired)
        await asyncio.sleep(GRACE * 3)  # and no second one
        seen.append(list(fired))
        return seen

    assert asyncio.run(scenario()) == [[], [], ["reexec"]]


def test_an_answer_starting_in_the_grace_period_defers_the_reload() -> None:
    """A delivery arriving between the last answer and the firing: the reload waits for it."""

    async def scenario() -> list[list[str]]:
        busy = Busy()
        reloader, fired = make("exit", busy)
        reloader.request()  # nothing busy: fires after GRACE ...
        busy.in_flight = 1  # ... unless an answer starts meanwhile
        await asyncio.sleep(GRACE * 3)
        seen = [list(fired)]
        busy.in_flight = 0
        reloader.poke()
        await fires(fired)
        seen.append(list(fired))
        return seen

    assert asyncio.run(scenario()) == [[], ["exit"]]


def test_answers_that_never_end_hold_the_reload_for_the_grace_only() -> None:
    """An answer that stays in flight (a stranger's request whose body never comes):
    the reload fires once the grace has passed, once, the answer still unsent."""

    async def scenario() -> list[str]:
        busy = Busy()
        reloader, fired = make("autoreload", busy, answer_grace=0.3)
        busy.in_flight = 1
        reloader.request()
        for _ in range(5):  # every answer ending pokes it: still one hold, one reload
            reloader.poke()
        await fires(fired)
        await asyncio.sleep(0.3 * 2)
        return fired

    assert asyncio.run(scenario()) == ["reexec"]


def test_a_deploy_holds_the_reload_past_the_grace_and_restarts_it() -> None:
    """A deploy running while answers hold the reload: the grace ending does not fire it
    (a deploy is never cut); once the deploy ends, the answers get a new grace."""

    async def scenario() -> list[list[str]]:
        busy = Busy()
        reloader, fired = make("exit", busy, answer_grace=0.3)
        busy.in_flight = 1
        reloader.request()
        await asyncio.sleep(GRACE * 2)  # the hold has begun
        busy.deploying = True
        await asyncio.sleep(0.3 * 2)  # its end found the deploy
        seen = [list(fired)]
        busy.deploying = False
        reloader.poke()
        await asyncio.sleep(GRACE * 2)  # a new hold, not the old one's end
        seen.append(list(fired))
        await fires(fired)
        seen.append(list(fired))
        return seen

    assert asyncio.run(scenario()) == [[], [], ["exit"]]


def test_without_answering_only_the_deploys_hold_the_reload() -> None:
    """``answering`` None (the daemon, which drains the answers itself once it no longer
    accepts connections): answers in flight do not hold the reload, a deploy does."""

    async def scenario() -> list[list[str]]:
        busy = Busy()
        fired: list[str] = []
        reloader = Reloader("autoreload", busy, on_reexec=lambda: fired.append("reexec"))
        busy.deploying, busy.in_flight = True, 3
        reloader.request()
        await asyncio.sleep(GRACE * 3)
        seen = [list(fired)]
        busy.deploying = False
        reloader.poke()
        await fires(fired)
        seen.append(list(fired))
        return seen

    assert asyncio.run(scenario()) == [[], ["reexec"]]


def test_none_and_auto_for_another_checkout_never_fire(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        fired: list[str] = []
        for mode in ("none", "auto"):
            reloader, log = make(mode, Busy(), repo_path=str(tmp_path))
            reloader.request()
            reloader.poke()
            await asyncio.sleep(GRACE * 3)
            fired += log
        return fired

    assert asyncio.run(scenario()) == []


def test_auto_reexecutes_when_the_checkout_holds_the_running_code() -> None:
    package = Path(deployhook.__file__).resolve().parent
    assert effective_mode("auto", str(package.parent)) == "autoreload"
    assert effective_mode("auto", "/nonexistent-site") == "none"
    for mode in ("autoreload", "exit", "none"):
        assert effective_mode(mode, "/nonexistent-site") == mode  # explicit modes kept


def test_holds_running_code_checks_the_package_and_the_main_script(tmp_path: Path) -> None:
    site = tmp_path / "site"
    script = site / "app.py"
    assert holds_running_code(str(site), [script])
    assert not holds_running_code(str(site), [tmp_path / "elsewhere" / "app.py"])
    assert not holds_running_code(str(tmp_path / "si"), [script])  # a prefix is no parent
    assert holds_running_code(str(Path(sys.prefix)), [Path(sys.prefix) / "lib"])
