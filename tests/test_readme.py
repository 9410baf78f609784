"""The README's Python snippets are complete programs: each one is extracted and run against a
live ring, with the ring's addresses in place of the README's 127.0.0.1:7001 and :7002."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chordcast.localring import LocalRing

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parents[1] / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def ring() -> Iterator[LocalRing]:
    nodes = LocalRing(extra_args=["--stabilize-interval", "0.2"])
    with nodes.running(3) as r:
        r.wait_converged()
        yield r
    nodes.check_logs()


def test_the_readme_has_python_snippets() -> None:
    assert len(SNIPPETS) >= 2


@pytest.mark.parametrize("number", range(len(SNIPPETS)))
def test_snippet_runs_as_written(ring: LocalRing, number: int, tmp_path: Path) -> None:
    live = ring.live()
    code = SNIPPETS[number]
    for readme_address, address in (("127.0.0.1:7001", live[0].address),
                                     ("127.0.0.1:7002", live[1].address)):
        code = code.replace(readme_address, address)
    script = tmp_path / f"snippet{number}.py"
    script.write_text(code)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert run.returncode == 0, f"snippet {number}:\n{code}\n{run.stdout}\n{run.stderr}"
    assert "Traceback" not in run.stderr, run.stderr
