"""The README names code as `facecore.module.NAME`: every such name must exist, so a module split or a
rename cannot leave the documentation pointing at nothing."""

import importlib
import re

from conftest import ROOT


def _exists(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):  # the longest importable module, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_every_facecore_name_in_the_readme_exists():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    names = sorted(set(re.findall(r"`(facecore(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`", text)))
    assert len(names) >= 20  # the README does name code
    missing = [n for n in names if not _exists(n)]
    assert not missing, f"README names code that does not exist: {missing}"
