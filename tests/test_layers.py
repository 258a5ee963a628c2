"""facecore's layering: no module imports another in a circle (imports inside functions included), no module
imports from a layer above its own (README "Architecture"), and nothing in facecore imports streamlit (pages
are the only Streamlit side)."""

import ast
from pathlib import Path

FACECORE = Path(__file__).resolve().parents[1] / "facecore"

# README "Architecture": pages (outside facecore) > command line > tasks > foundations; each layer imports only
# from the layers below it (or its own). THE one map of facecore's modules to layers: a package's name places
# all its modules, a module's own name wins. A module that is in no layer fails the tests: place new ones here.
FOUNDATIONS, TASKS, CLI, BESIDE = 0, 1, 2, 3
LAYERS = {
    # foundations: saved models, detectors, networks, box styles, data, small shared pieces
    **dict.fromkeys([
        "registry", "meta", "detect", "blazeface", "blazeface.builtin", "blazeface.saved", "facetracker",
        "facetracker.inference", "facetracker.backbones", "facetracker.model", "facetracker.losses",
        "blazeface.port", "blazeface.network", "blazeface.losses", "blazeface.boxstyle", "datasets",
        "datasets.dataset", "datasets.splits", "datasets.archive", "datasets.labels", "datasets.contents",
        "datasets.checks", "datasets.workspace", "images", "io", "boxes", "jobs", "jobs.procs", "jobs.progress",
        "jobs.thread", "errors", "preprocess", "evaluate.ap", "smoothing"], FOUNDATIONS),
    # tasks: each takes explicit config, reports Progress, stops on Cancel
    **dict.fromkeys([
        "train", "blazeface.finetune", "scan", "evaluate", "evaluate.metrics", "evaluate.every_face", "evaluate.each", "video",
        "live", "live.processor", "live.pacing", "live.rtc", "live.reconnect", "live.browser", "identity",
        "identity.data", "identity.train", "identity.compare", "identity.recognize", "datasets.labeling",
        "datasets.prelabel", "evaluate.provenance", "augment", "augment.mosaic",
        "",  # the package itself: its public names, and rtc.preload_srtp before anything imports TensorFlow
    ], TASKS),
    **dict.fromkeys(["cli", "__main__"], CLI),
    "testing": BESIDE,  # beside the layers, for tests and benchmarks: it may import anything, nothing imports it
}


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    """The layer of ``module`` (``"pkg.a.b"``): the deepest of ``"a.b"``, ``"a"`` in ``layers`` (names
    relative to the package; ``""`` is the package itself), None when it is in none."""
    parts = module.split(".")[1:]
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in layers:
            return layers[".".join(parts[:i])]
    return layers.get("") if not parts else None


def upward_imports(edges: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """Every import from a lower layer to a higher one (``"a (layer 0) imports b (layer 1)"``), and every
    module in no layer (``"a: in no layer"``), sorted."""
    out = [f"{m}: in no layer" for m in sorted(edges) if layer_of(m, layers) is None]
    for m in sorted(edges):
        lm = layer_of(m, layers)
        for t in sorted(edges[m]):
            lt = layer_of(t, layers)
            if lm is not None and lt is not None and lt > lm:
                out.append(f"{m} (layer {lm}) imports {t} (layer {lt})")
    return out


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """``(edges, others)`` for the package at ``root``: ``edges[m]`` = the package's modules that module
    ``m`` imports anywhere (top level or inside a function); ``others[m]`` = the top-level names of every
    other package it imports."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in files}
    others: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
                target = ".".join(p for p in (base, node.module or "") if p)
                # "from . import x" imports module x when there is one, else a name of the package
                targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in files else target for a in node.names]
            for t in targets:
                if t in files and t != mod:
                    edges[mod].add(t)
                elif t.split(".")[0] != root.name:
                    others[mod].add(t.split(".")[0])
    return edges, others


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_a_cycle_through_a_function_level_import(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "b.py").write_text("def f():\n    from .sub import c\n")
    (pkg / "sub" / "c.py").write_text("import numpy\n\ndef g():\n    from .. import a\n")
    edges, others = import_graph(pkg)
    assert edges["pkg.a"] == {"pkg.b"} and edges["pkg.b"] == {"pkg.sub.c"} and edges["pkg.sub.c"] == {"pkg.a"}
    assert cycles(edges) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    assert others["pkg.sub.c"] == {"numpy"}


def test_facecore_has_no_import_cycle():
    edges, _ = import_graph(FACECORE)
    assert len(edges) > 30  # every module was read
    assert cycles(edges) == []


def test_facecore_never_imports_streamlit():
    _, others = import_graph(FACECORE)
    assert [m for m, names in sorted(others.items()) if names & {"streamlit", "streamlit_webrtc"}] == []


def _package(tmp_path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    return pkg


def test_the_checker_sees_an_upward_import_and_an_unplaced_module(tmp_path):
    pkg = _package(tmp_path, {"low.py": "def f():\n    from .tasks import run\n",  # inside a function too
                              "tasks/__init__.py": "", "tasks/run.py": "from ..low import f\n",
                              "cli.py": "from .tasks.run import f\n", "stray.py": "from . import low\n"})
    layers = {"": 1, "low": 0, "tasks": 1, "cli": 2}
    edges, _ = import_graph(pkg)
    assert layer_of("pkg.tasks.run", layers) == 1 and layer_of("pkg", layers) == 1
    assert upward_imports(edges, layers) == ["pkg.stray: in no layer",
                                             "pkg.low (layer 0) imports pkg.tasks.run (layer 1)"]
    (pkg / "low.py").write_text("import os\n")
    layers["stray"] = 2
    assert upward_imports(import_graph(pkg)[0], layers) == []


def test_no_module_imports_from_a_layer_above_its_own():
    edges, _ = import_graph(FACECORE)
    assert upward_imports(edges, LAYERS) == []
