"""Run the atheris harness (fuzz/fuzz_delivery.py) for a short, bounded time.

Skipped, saying so, when atheris is not installed (``pip install atheris``).  Any
exception other than a DeliveryError in verifying, parsing or deciding a GitHub
delivery (``forges.verify``, ``forges.parse``, ``decide_event``) fails the run;
libFuzzer then writes the crashing input to the temporary directory.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

from tests.tools import require_tool

HARNESS = Path(__file__).parent.parent / "fuzz" / "fuzz_delivery.py"
SEEDS = Path(__file__).parent / "fixtures" / "github"
RUNS = 200_000


def test_fuzz_github_delivery_verify_parse_and_decide(tmp_path: Path) -> None:
    """200 000 executions (at most 20 s) seeded with GitHub's example payloads: no crash."""
    require_tool(importlib.util.find_spec("atheris"),
                 "atheris is not installed (pip install atheris): fuzzing skipped")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    proc = subprocess.run(
        [sys.executable, str(HARNESS), f"-runs={RUNS}", "-max_total_time=20", "-seed=1",
         f"-artifact_prefix={tmp_path}/", str(corpus), str(SEEDS)],
        capture_output=True, text=True, timeout=180, cwd=tmp_path)
    output = proc.stderr + proc.stdout
    assert proc.returncode == 0, output[-4000:]
    done = re.search(r"Done (\d+) runs in (\d+) second", output)
    assert done, output[-4000:]
    print(f"\nfuzz: {done.group(1)} executions in {done.group(2)} s without a crash")
    assert int(done.group(1)) >= RUNS or int(done.group(2)) >= 20
