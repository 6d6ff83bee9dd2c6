"""Run the atheris harness fuzz/fuzz_forges.py for a short, bounded time.

Skipped, saying so, when atheris is not installed.  Seeded with the real payloads
of every forge (tests/fixtures/*, sources in tests/test_forges.py); any exception
other than a DeliveryError, or an unsafe push, fails the run.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).parent.parent / "fuzz" / "fuzz_forges.py"
FIXTURES = Path(__file__).parent / "fixtures"
RUNS = 50_000


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris is not installed (pip install atheris): fuzzing skipped")
def test_fuzz_every_forge(tmp_path: Path) -> None:
    """50 000 executions (at most 15 s) seeded with every forge's payloads: no crash."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for path in FIXTURES.glob("*/*.json"):
        if not path.name.startswith("schema_"):
            (corpus / f"{path.parent.name}-{path.name}").write_bytes(path.read_bytes())
    proc = subprocess.run(
        [sys.executable, str(HARNESS), f"-runs={RUNS}", "-max_total_time=15", "-seed=1",
         f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, timeout=180, cwd=tmp_path)
    output = proc.stderr + proc.stdout
    assert proc.returncode == 0, output[-4000:]
    done = re.search(r"Done (\d+) runs in (\d+) second", output)
    assert done, output[-4000:]
    print(f"\nfuzz: {done.group(1)} executions in {done.group(2)} s without a crash")
    assert int(done.group(1)) >= RUNS or int(done.group(2)) >= 15
