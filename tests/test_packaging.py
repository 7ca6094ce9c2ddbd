"""What a non-editable install ships: setup.py's package_data must hold every file qsim reads at run time."""
import ast
import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def package_data() -> dict:
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    return ast.literal_eval(next(k.value for k in call.keywords if k.arg == "package_data"))


def shipped(package: str, relative: str) -> bool:
    return any(fnmatch.fnmatch(relative, pattern) for pattern in package_data().get(package, []))


def test_the_cuda_sources_and_every_header_they_include_are_shipped():
    """qsim/cuda.py compiles csrc/cuda/*.cu from the installed qsim.data/csrc at first use."""
    csrc = ROOT / "qsim" / "data" / "csrc"
    todo, seen = [p.relative_to(csrc).as_posix() for p in (csrc / "cuda").glob("*.cu")], set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += re.findall(r'#include "([^"]+)"', (csrc / name).read_text())
    assert len(seen) > 5 and [n for n in sorted(seen) if not shipped("qsim.data", f"csrc/{n}")] == []


def test_every_data_file_is_shipped():
    data = ROOT / "qsim" / "data"
    for package in ("formats", "hw_models", "meta"):
        files = [p.relative_to(data / package).as_posix() for p in (data / package).rglob("*")
                 if p.is_file() and p.suffix in (".toml", ".csv")]
        assert files and [f for f in files if not shipped(f"qsim.data.{package}", f)] == []
