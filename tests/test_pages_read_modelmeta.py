"""Pages read a saved model's ``meta.json`` only through ``facecore.meta.ModelMeta`` attributes (or small
facecore helpers), never its raw keys: an AST scan of ``pages/`` and ``streamlit_app.py``."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# keys that only a meta.json has: reading one from any dict on a page is reading meta.json by hand
META_ONLY_KEYS = {"metrics", "box_style", "architecture", "frame_aspect", "network_input_hw", "input_shape",
                  "personalization", "start_style", "crop_margin", "training", "best_epoch", "size_bytes",
                  "latency_ms"}  # not "config": the Recognize page's comparison.json has one too


def _named_meta(node) -> bool:
    """``meta``, ``m.meta``, ``model_meta``...: a name or attribute that says it holds a meta.json."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return "meta" in name.lower()


def _key(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def raw_meta_reads(source: str, filename: str = "<page>") -> list[str]:
    """``"file:line: what"`` for every raw meta.json read in ``source``: ``x[...]`` or ``x.get(...)`` where ``x``
    is named like a meta (``meta``, ``m.meta``), and ``[...]`` or ``.get(...)`` of a key only meta.json has
    (``["metrics"]``, ``.get("box_style")``)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript):
            target, key = node.value, _key(node.slice)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args):
            target, key = node.func.value, _key(node.args[0])
        else:
            continue
        if _named_meta(target) or key in META_ONLY_KEYS:
            out.append(f"{filename}:{node.lineno}: {ast.unparse(node)[:80]}")
    return out


def page_files() -> list[Path]:
    files = [ROOT / "streamlit_app.py", *sorted((ROOT / "pages").rglob("*.py"))]
    return [p for p in files if "node_modules" not in p.parts]


def test_the_checker_sees_raw_meta_reads():
    bad = ('meta = job.result[1]\nm = meta["metrics"]["val"]\nb = info.meta.get("box_style", {})\n'
           'x = doc["training"]\ny = cfg.get("architecture")\nok = meta.history\n')
    found = raw_meta_reads(bad, "p.py")
    assert sorted(f.split(":")[1] for f in found) == ["2", "3", "4", "5"], found  # line 2: meta["metrics"]
    good = ('meta = model_meta(name, root)\nrows = meta.split_metrics("val")\nst.write(meta.backbone, meta.input_hw)\n'
            'st.session_state["train_metrics_shown"] = True\nd = results["val"]\n')
    assert raw_meta_reads(good) == []


def test_pages_read_no_raw_meta_json_keys():
    assert len(page_files()) > 8  # the app and every page were read
    found = [hit for p in page_files() for hit in raw_meta_reads(p.read_text(encoding="utf-8"), p.relative_to(ROOT).as_posix())]
    assert found == [], "read these through facecore.meta.ModelMeta attributes:\n" + "\n".join(found)
