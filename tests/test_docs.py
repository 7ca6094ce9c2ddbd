"""The Python examples of README.md and docs/ run as written (each block in a fresh namespace, in a
temporary directory so the files they write go nowhere)."""
import pathlib
import re

import matplotlib
import pytest

matplotlib.use("Agg")

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [pytest.param(code, id=f"{path.name}:{text[:match.start()].count(chr(10)) + 1}")
          for path in DOCS for text in [path.read_text()]
          for match in re.finditer(r"```python\n(.*?)```", text, re.S) for code in [match.group(1)]]


def test_the_docs_have_python_examples():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("code", BLOCKS)
def test_python_example_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<docs example>", "exec"), {"__name__": "__docs__"})
