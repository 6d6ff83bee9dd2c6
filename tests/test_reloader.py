"""The Reloader on a real IOLoop: it waits for every answer in flight, and ``auto``."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import deployhook
from deployhook.service.reload import GRACE, Reloader, effective_mode, holds_running_code


class Busy:
    """Stands for DeployHook.busy(): answers in flight and a running deploy."""

    def __init__(self) -> None:
        self.in_flight = 0

    def __call__(self) -> bool:
        return self.in_flight > 0


def make(mode: str, busy: Busy, repo_path: str = ".") -> tuple[Reloader, list[str]]:
    fired: list[str] = []
    reloader = Reloader(mode, busy, on_exit=lambda: fired.append("exit"),
                        on_reexec=lambda: fired.append("reexec"), repo_path=repo_path)
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
