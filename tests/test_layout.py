"""The package layout: one wing per stage, no import circle between files, a docstring on every module."""

import ast
from pathlib import Path

import ntre_zoo

PACKAGE = Path(ntre_zoo.__file__).parent
TOP_LEVEL = {"__init__.py", "__main__.py", "_atomic.py", "demo.py", "errors.py"}
WINGS = {"model", "inference", "data", "evaluation", "training", "zoo", "export", "app", "cli"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str, modules: set) -> str:
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def import_graph() -> dict:
    """Module -> the package modules it imports, counting imports inside functions too."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    graph = {}
    for name, path in files.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    full = f"{module}.{alias.name}"
                    targets.add(full if full in modules else _resolve(module, modules))
            elif isinstance(node, ast.Import):
                targets.update(_resolve(alias.name, modules) for alias in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


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


def test_top_level_holds_only_the_wings_and_shared_files():
    files = {p.name for p in PACKAGE.glob("*.py")}
    assert files == TOP_LEVEL
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == WINGS


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
            "ModelConfig",
            "NTRENet",
            "NTRENetOutput",
            "Points",
            "Prediction",
            "QueryFeatures",
            "Scribble",
            "Segmentation",
            "SupportFeatures",
            "create_model",
            "evaluate",
            "export_onnx",
            "from_official_checkpoint",
            "from_pretrained",
            "list_models",
            "predict",
            "segment",
            "visualize",
            "__version__",
        ]
    )
    assert all(hasattr(ntre_zoo, name) for name in ntre_zoo.__all__)
