"""The size rule: no module of the app (facecore/, pages/, streamlit_app.py) over 400 lines and no function
over 80, so that each stays readable in one sitting. A function's length runs from its ``def`` line to its
last line (decorators left out); a nested function counts on its own, and inside its parent too."""

import ast
from pathlib import Path

from conftest import ROOT

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def app_sources(root: Path) -> list[Path]:
    """Every Python file of the app under ``root`` (a frontend's node_modules holds none of ours)."""
    files = [*(root / "facecore").rglob("*.py"), *(root / "pages").rglob("*.py"), root / "streamlit_app.py"]
    return sorted(p for p in files if p.is_file() and "node_modules" not in p.parts)


def oversized(paths: list[Path], root: Path, max_module: int = MAX_MODULE_LINES,
              max_function: int = MAX_FUNCTION_LINES) -> list[str]:
    """One line per module over ``max_module`` lines and per function over ``max_function`` lines."""
    out = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(root).as_posix()
        lines = len(text.splitlines())
        if lines > max_module:
            out.append(f"{rel}: {lines} lines (module limit {max_module})")
        for node in ast.walk(ast.parse(text, filename=rel)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > max_function:
                    out.append(f"{rel}:{node.lineno} {node.name}(): {length} lines (function limit {max_function})")
    return out


def test_the_checker_finds_a_long_function_and_a_long_module(tmp_path):
    short_body = "".join(f"    x{i} = {i}\n" for i in range(78))
    long_body = "".join(f"            y{i} = {i}\n" for i in range(80))
    ok = tmp_path / "ok.py"
    ok.write_text("@staticmethod\n@property\ndef fine():\n" + short_body + "    return 0\n")  # 80 lines: allowed
    nested = tmp_path / "nested.py"
    nested.write_text("class A:\n    def outer(self):\n        async def inner():\n" + long_body + "        return inner\n")
    big = tmp_path / "big.py"
    big.write_text("".join(f"v{i} = {i}\n" for i in range(401)))
    assert oversized([ok], tmp_path) == []
    assert oversized([nested], tmp_path) == ["nested.py:2 outer(): 83 lines (function limit 80)",
                                             "nested.py:3 inner(): 81 lines (function limit 80)"]
    assert oversized([big], tmp_path) == ["big.py: 401 lines (module limit 400)"]


def test_the_app_is_read_whole():
    paths = app_sources(ROOT)
    names = {p.relative_to(ROOT).as_posix() for p in paths}
    assert {"streamlit_app.py", "facecore/__init__.py", "facecore/jobs/__init__.py"} <= names
    assert any(n.startswith("pages/common/") for n in names) and any(n.startswith("facecore/cli/") for n in names)


def test_no_module_over_400_lines_and_no_function_over_80():
    offenders = oversized(app_sources(ROOT), ROOT)
    assert not offenders, "split these into well-named pieces:\n" + "\n".join(offenders)
