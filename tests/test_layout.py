"""The package layout: the wings in one order, no import circle between files, a docstring on every module, and
every test file in CONTRIBUTING.md's "Where a test goes" table."""

import ast
import importlib
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

import pytest

import ntre_zoo

PACKAGE = Path(ntre_zoo.__file__).parent
TOP_LEVEL = {"__init__.py", "__main__.py", "_atomic.py", "demo.py", "errors.py"}
WINGS = {"model", "inference", "data", "evaluation", "training", "zoo", "pipeline", "export", "app", "cli"}

#: The wings (and top-level modules) from the bottom up: a module imports only from its own rank and the ranks
#: before it. Names on one rank are peers. docs/architecture.md draws the same order.
ORDER = (
    {"_atomic", "errors"},  # shared by every wing; they import nothing of the package
    {"data"},
    {"model"},
    {"inference", "evaluation"},
    {"training"},
    {"zoo"},
    {"pipeline"},
    {"export", "app", "demo"},
    {"cli"},
    {"__init__", "__main__"},  # the public API and `python -m ntre_zoo`
)
RANK = {name: rank for rank, names in enumerate(ORDER) for name in names}

_MIXIN = "the model's convenience methods, as transformers models have them; the mixin never imports the model class"
_ALIAS = "deprecated alias of the moved module for one release; only a user who names it imports it"
#: Every import of a later wing, each with its reason. Nothing else may go against the order.
ALLOWED_LATER_IMPORTS = {
    ("ntre_zoo.model.mixin", "ntre_zoo.inference.predict"): f"model.predict, model.encode_support: {_MIXIN}",
    ("ntre_zoo.model.mixin", "ntre_zoo.inference.segment"): f"model.segment: {_MIXIN}",
    ("ntre_zoo.model.mixin", "ntre_zoo.inference.video"): f"model.predict_video, model.segment_video: {_MIXIN}",
    ("ntre_zoo.model.mixin", "ntre_zoo.zoo.publish"): f"model.push_to_hub: {_MIXIN}",
    ("ntre_zoo.model.mixin", "ntre_zoo.zoo.saving"): f"model.save_pretrained: {_MIXIN}",
    ("ntre_zoo.zoo.recipes", "ntre_zoo.pipeline.recipes"): _ALIAS,
    ("ntre_zoo.zoo.reproduce", "ntre_zoo.pipeline.reproduce"): _ALIAS,
    ("ntre_zoo.training.fine_tune", "ntre_zoo.pipeline.fine_tune"): _ALIAS,
}
#: Old module path -> where the module lives now.
MOVED = {
    "ntre_zoo.zoo.recipes": "ntre_zoo.pipeline.recipes",
    "ntre_zoo.zoo.reproduce": "ntre_zoo.pipeline.reproduce",
    "ntre_zoo.training.fine_tune": "ntre_zoo.pipeline.fine_tune",
}


class Import(NamedTuple):
    """One import statement's edge: ``module`` (in file ``path``, line ``line``) imports package module ``target``."""

    module: str
    path: Path
    line: int
    target: str


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str, modules: set) -> str:
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports() -> list[Import]:
    """Every import of one package module by another, counting imports inside functions too."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    found = []
    for name, path in files.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = set()
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    full = f"{module}.{alias.name}"
                    targets.add(full if full in modules else _resolve(module, modules))
            elif isinstance(node, ast.Import):
                targets.update(_resolve(alias.name, modules) for alias in node.names)
            found += [Import(name, path, node.lineno, t) for t in sorted(targets) if t in modules and t != name]
    return found


def import_graph() -> dict:
    """Module -> the package modules it imports."""
    graph: dict = {_module_name(p): set() for p in PACKAGE.rglob("*.py")}
    for edge in imports():
        graph[edge.module].add(edge.target)
    return graph


def wing(module: str) -> str:
    """The wing of ``ntre_zoo.WING.x`` or the top-level module's name (``__init__`` for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def later_imports(edges: list[Import]) -> list[str]:
    """Each import of a later wing that :data:`ALLOWED_LATER_IMPORTS` does not list, as ``file:line: ...``."""
    return [
        f"{edge.path.relative_to(PACKAGE.parent)}:{edge.line}: {edge.module} imports {edge.target}, "
        f"but {wing(edge.module)} comes before {wing(edge.target)}"
        for edge in edges
        if RANK[wing(edge.target)] > RANK[wing(edge.module)] and (edge.module, edge.target) not in ALLOWED_LATER_IMPORTS
    ]


def find_cycle(graph: dict):
    """One import cycle as a list of modules, or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt, [*stack, nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_no_import_cycle_between_files():
    assert find_cycle(import_graph()) is None


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = import_graph()
    graph["ntre_zoo.model.types"] = graph["ntre_zoo.model.types"] | {"ntre_zoo.inference.predict"}
    assert find_cycle(graph) is not None


def test_the_model_module_is_imported_by_nothing_it_imports():
    graph = import_graph()
    seen, todo = set(), ["ntre_zoo.model.mixin"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph[module])
    assert "ntre_zoo.model.ntrenet" not in seen


def test_no_wing_imports_a_later_wing():
    assert later_imports(imports()) == []


def test_the_order_check_names_a_planted_later_import():
    planted = Import("ntre_zoo.zoo.manifest", PACKAGE / "zoo" / "manifest.py", 7, "ntre_zoo.pipeline.recipes")
    assert later_imports([*imports(), planted]) == [
        "ntre_zoo/zoo/manifest.py:7: ntre_zoo.zoo.manifest imports ntre_zoo.pipeline.recipes, "
        "but zoo comes before pipeline"
    ]
    downward = Import("ntre_zoo.pipeline.recipes", PACKAGE / "pipeline" / "recipes.py", 1, "ntre_zoo.zoo.manifest")
    peers = Import("ntre_zoo.inference.predict", PACKAGE / "inference" / "predict.py", 1, "ntre_zoo.evaluation.loop")
    assert later_imports([downward, peers]) == []


def test_every_allowed_later_import_is_still_made():
    made = {(edge.module, edge.target) for edge in imports()}
    assert set(ALLOWED_LATER_IMPORTS) - made == set()


def test_no_module_of_the_package_imports_a_deprecated_alias():
    assert [edge for edge in imports() if edge.target in MOVED] == []


def test_importing_the_zoo_wing_loads_neither_training_nor_the_pipeline_nor_the_cli():
    code = "import sys, ntre_zoo.zoo; print(*sorted(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "ntre_zoo.zoo.hub" in loaded  # the package's __init__ runs first
    assert [m for m in loaded if m.startswith(("ntre_zoo.training", "ntre_zoo.pipeline", "ntre_zoo.cli"))] == []


@pytest.mark.parametrize("old", sorted(MOVED))
def test_a_moved_module_keeps_its_old_path_for_one_release_with_a_warning(monkeypatch, old):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated .*: use {MOVED[old]}$"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])
    monkeypatch.delitem(sys.modules, old)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(f"import {old}", "user_script.py", "exec"), {})  # a user's own line
    assert [(w.category, w.filename) for w in caught] == [(DeprecationWarning, "user_script.py")]


def test_top_level_holds_only_the_wings_and_shared_files():
    files = {p.name for p in PACKAGE.glob("*.py")}
    assert files == TOP_LEVEL
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == WINGS
    assert set(RANK) == WINGS | {Path(name).stem for name in TOP_LEVEL}  # every wing has its place in the order


def test_every_module_says_what_it_is():
    missing = [
        str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if not ast.get_docstring(ast.parse(p.read_text()))
    ]
    assert missing == []


def test_public_api_is_unchanged():
    assert sorted(ntre_zoo.__all__) == sorted(
        [
            "BackboneConfig",
            "Box",
            "DataConfig",
            "ModelConfig",
            "NTRENet",
            "NTRENetOutput",
            "Points",
            "Prediction",
            "QueryFeatures",
            "RunConfig",
            "Scribble",
            "Segmentation",
            "SupportFeatures",
            "TrainConfig",
            "create_model",
            "evaluate",
            "export_onnx",
            "fine_tune",
            "from_official_checkpoint",
            "from_pretrained",
            "iter_segment",
            "list_models",
            "predict",
            "segment",
            "train",
            "visualize",
            "__version__",
        ]
    )
    assert all(getattr(ntre_zoo, name) is not None for name in ntre_zoo.__all__)  # the ones loaded on first use too
    assert all(hasattr(ntre_zoo, name) for name in ntre_zoo.__all__)


def _test_table() -> list[str]:
    """The test files CONTRIBUTING.md's "Where a test goes" table names, in its order."""
    text = (Path(__file__).resolve().parents[1] / "CONTRIBUTING.md").read_text()
    start = text.index("\n## Where a test goes\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"^\| `tests/(test_\w+\.py)` \|", text[start : end if end != -1 else None], re.M)


def test_every_test_file_is_in_the_contributing_table():
    listed = _test_table()
    files = sorted(p.name for p in Path(__file__).parent.glob("test_*.py"))
    missing = [name for name in files if name not in listed]
    rows = "; ".join(f"| `tests/{name}` | <the module(s) or topic it tests> |" for name in missing)
    assert not missing, (
        f'{", ".join(missing)} not listed: add to the table under "## Where a test goes" in CONTRIBUTING.md: {rows}'
    )
    absent = sorted(set(listed) - set(files))
    assert not absent, f'CONTRIBUTING.md\'s "Where a test goes" table names {", ".join(absent)}, not in tests/'
    assert len(listed) == len(set(listed)), "a file is listed twice in CONTRIBUTING.md's table"
