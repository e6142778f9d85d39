"""docs/python-api.md's examples, run as the one script they are, in a fresh folder."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_python_api_page_has_examples_for_every_call():
    code = "\n".join(examples())
    for name in ("ingest(", "plan(", "search(", "status(", "export(", "repair(", "Location.of("):
        assert name in code, name


@pytest.mark.slow
def test_the_python_api_examples_run_as_written(tmp_path: Path):
    script = tmp_path / "examples.py"
    body = "\n\n".join(examples())
    # as the page says: a script that starts runs needs the main guard (worker processes import it)
    guarded = "if __name__ == \"__main__\":\n" + "".join(f"    {line}" if line.strip() else line
                                                         for line in body.splitlines(keepends=True))
    script.write_text(guarded, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--overlap must be smaller than --chunk-tokens." in proc.stdout


@pytest.mark.slow
def test_the_readmes_python_example_runs_as_written(tmp_path: Path):
    from alexandria.tools.sample import make_sample_library

    readme = (DOC.parents[1] / "README.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"```python\n(.*?)```", readme, re.S)
    make_sample_library(tmp_path / "sample-library")
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Whaling" in proc.stdout.splitlines()[0]
