"""What-if runs: deployhook with monkeypatches that approximate the proposed optimisations.

Analysis only -- nothing here changes the package.  Each variant runs the real
daemon (``python bench/whatif.py --serve VARIANT serve --config ...``) with the
named patches applied first, on fresh fixtures, round-robin with the unpatched
daemon, and the figure is measured the way bench/run.py measures it:

- ``norecord``: deliveries answered at once (ignored, rejected) are not written
  to the SQLite record (upper bound for batching those writes);
- ``secretcache``: the secret file is re-read only when its stat changes;
- ``nosync``: no ``git submodule sync --recursive`` (needed only when
  ``.gitmodules`` changed);
- ``inproc``: HEAD, the branch and ``rev-parse refs/...`` read in-process with
  GitPython's ref reader instead of spawning git; ``contains(HEAD)`` short-cut.

``python bench/whatif.py --figure throughput`` or ``--figure overhead``.  The
patches reach into deployhook's internals and may need updating when those change.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

THROUGHPUT = ("none", "norecord", "secretcache", "norecord+secretcache")
OVERHEAD = ("none", "nosync", "inproc", "nosync+inproc")


def apply(patches: set[str]) -> None:
    """Monkeypatch deployhook (in this process) with ``patches``."""
    from git.refs.symbolic import SymbolicReference

    import deployhook.checkout as checkout
    import deployhook.handlers as handlers
    import deployhook.secret as secret

    if "norecord" in patches:
        answer = handlers.WebhookHandler.answer

        class Drop:
            @staticmethod
            def submit(fn: Any) -> None:
                return None

        def unrecorded(self: Any, status: int, delivery_id: str, body: dict[str, Any]) -> None:
            if self.row is not None:
                return answer(self, status, delivery_id, body)
            real, self.hook.record = self.hook.record, Drop()
            try:
                return answer(self, status, delivery_id, body)
            finally:
                self.hook.record = real

        handlers.WebhookHandler.answer = unrecorded  # type: ignore[method-assign]
    if "secretcache" in patches:
        get = secret.SecretSource.get

        def cached(self: Any) -> bytes:
            try:
                st = os.stat(self.path)
                key: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
            except OSError:
                key = None
            hit = getattr(self, "_bench_cache", None)
            if key is not None and hit is not None and hit[0] == key:
                return bytes(hit[1])
            value = get(self)
            self._bench_cache = (key, value)
            return value

        secret.SecretSource.get = cached  # type: ignore[method-assign]
    if "nosync" in patches:
        step = checkout.Checkout._step

        def no_sync(self: Any, name: str, steps: list[Any], *args: str, **kw: Any) -> Any:
            return None if name == "submodule sync" else step(self, name, steps, *args, **kw)

        checkout.Checkout._step = no_sync  # type: ignore[method-assign]
    if "inproc" in patches:
        run_git, contains = checkout.Checkout._git, checkout.Checkout.contains

        def ref(self: Any, name: str) -> str | None:
            try:
                return str(SymbolicReference.dereference_recursive(self.repo, name))
            except Exception:
                return None

        def branch(self: Any) -> str | None:
            try:
                head = self.repo.head
                return None if head.is_detached else str(head.reference.name)
            except Exception:
                return None

        def git(self: Any, *args: str, **kw: Any) -> tuple[int, str, str]:
            if args and args[0] == "rev-parse" and args[-1].startswith("refs/") \
                    and not kw.get("cwd"):
                sha = ref(self, args[-1])
                return (0, sha + "\n", "") if sha else (1, "", "")
            return run_git(self, *args, **kw)  # type: ignore[no-any-return]

        checkout.Checkout.head = lambda self: ref(self, "HEAD")  # type: ignore[method-assign]
        checkout.Checkout.current_branch = branch  # type: ignore[method-assign]
        checkout.Checkout.contains = (  # type: ignore[method-assign]
            lambda self, sha: sha == ref(self, "HEAD") or contains(self, sha))
        checkout.Checkout._git = git  # type: ignore[method-assign]


def serve(variant: str, argv: list[str]) -> int:
    """Apply ``variant``'s patches and run deployhook's command line with ``argv``."""
    apply(set(variant.split("+")) - {"none"})
    from deployhook.cli import main

    return main(argv)


def experiment(figure: str, rounds: int) -> dict[str, list[float]]:
    """Run every variant of ``figure`` ``rounds`` times, round-robin; print a summary."""
    import measure
    from fixtures import isolate_git, make_repos
    from targets import Deployhook, free_port, kill_all

    class Patched(Deployhook):
        variant = "none"

        def argv(self) -> list[str]:
            argv = super().argv()
            return [argv[0], str(Path(__file__).resolve()), "--serve", self.variant, *argv[3:]]

    work = Path(tempfile.mkdtemp(prefix="deployhook-whatif-"))
    isolate_git(work)
    variants = THROUGHPUT if figure == "throughput" else OVERHEAD
    found: dict[str, list[float]] = {v: [] for v in variants}
    rss: dict[str, list[float]] = {v: [] for v in variants}
    try:
        for i in range(rounds):
            for variant in variants:
                root = work / f"{variant}-{i}"
                root.mkdir()
                target = Patched(make_repos(root), free_port())
                target.variant = variant
                try:
                    target.start()
                    if figure == "throughput":
                        value = measure.throughput(target, root, 5)["ignored"]["rps"]
                        rss[variant].append(measure.memory(target.pid)["rss_mb"])
                    else:
                        value = measure.overhead(target, target.repos, 7)["ratio"]
                finally:
                    target.stop()
                found[variant].append(value)
                print(f"round {i + 1} {variant}: {value}", flush=True)
    finally:
        kill_all()
        shutil.rmtree(work, ignore_errors=True)
    unit = "ignored req/s" if figure == "throughput" else "x plain git"
    base = statistics.median(found["none"])
    for variant, values in found.items():
        med = statistics.median(values)
        memory = f"  RSS after {statistics.median(rss[variant])} MB" if rss[variant] else ""
        print(f"{variant:<24} median {med:>9.2f} {unit}  ({med / base:.2f}x unpatched)  "
              f"rounds {values}{memory}")
    return found


def main() -> int:
    """``--serve VARIANT ARGS...`` runs the daemon; otherwise run an experiment."""
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        return serve(sys.argv[2], sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--figure", choices=("throughput", "overhead"), required=True)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    experiment(args.figure, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
