"""The layout's import rules (issue 23), read from the source with :mod:`ast` (every import, at
module level or inside a function):

* no import circle among mner's modules at module level;
* nothing under ``batch/``, ``report/`` or ``explain/`` imports the service (``mner.serve``): what
  they share with it (match probability, attention, the palette) lives in :mod:`mner.explain`;
* the task registry imports no model, data or service module at module level (every entry point
  imports it first);
* ``models/`` does not import ``data/`` (an import for annotations only, under ``if TYPE_CHECKING:``,
  does not count): a model sees tensors; its processor gets an image store from its caller;
* nothing reads a model's extras (match probability, attention) through forward hooks: they are
  fields of the model's output (:class:`mner.models.base.TaggerOutput`).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    out = {}
    for f in (SRC / "mner").rglob("*.py"):
        rel = f.relative_to(SRC).with_suffix("")
        out[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = f
    return out


MODULES = _modules()


def imports(name: str, module_level_only: bool = False) -> set[str]:
    """The mner modules ``name`` imports (``from a.b import c`` counts ``a.b``, and ``a.b.c`` when it is a module)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    for node in ast.walk(tree):  # imports for type annotations only (``if TYPE_CHECKING:``) never run
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("mner"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("mner"))
    return {m for m in out if m in MODULES} - {name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    seen, stack, on_path, found = set(), [], set(), []

    def visit(v: str) -> None:
        seen.add(v)
        stack.append(v)
        on_path.add(v)
        for w in sorted(graph.get(v, ())):
            if w in on_path:
                found.append(stack[stack.index(w):] + [w])
            elif w not in seen:
                visit(w)
        stack.pop()
        on_path.discard(v)

    for v in sorted(graph):
        if v not in seen:
            visit(v)
    return found


def test_the_scan_sees_imports_and_finds_a_planted_circle():
    assert "mner.pipeline" in imports("mner.fewshot.pipeline")
    assert "mner.evaluation" in imports("mner.controls")                    # a function-level import
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_at_module_level():
    graph = {m: imports(m, module_level_only=True) for m in MODULES}
    assert _cycles(graph) == []


def test_batch_report_and_explain_do_not_import_the_service():
    for name in MODULES:
        if name.startswith(("mner.batch", "mner.report", "mner.explain", "mner.controls")):
            bad = {m for m in imports(name) if m == "mner.serve" or m.startswith("mner.serve.")}
            assert not bad, f"{name} imports {sorted(bad)}"


def test_the_task_registry_is_light():
    assert imports("mner.tasks", module_level_only=True) <= {"mner.errors"}


def test_models_do_not_import_the_data_layer():
    reading = {name for name in MODULES if name.startswith("mner.models")
               and any(m == "mner.data" or m.startswith("mner.data.") for m in imports(name))}
    assert reading == set()


def test_only_the_run_of_mner_tag_imports_an_engine():
    """``batch.job`` holds what the engines share; ``batch.run`` picks the engine: no mutual imports."""
    engines = {"mner.batch.engine_local", "mner.batch.engine_ray"}
    importing = {name for name in MODULES if name.startswith("mner.") and imports(name) & engines}
    assert importing == {"mner.batch.run"}
    assert not any("mner.batch.run" in imports(e) for e in engines)


def test_no_forward_hooks_outside_the_training_tools():
    hooked = {name for name, path in MODULES.items() if "register_forward_hook" in path.read_text(encoding="utf-8")}
    assert hooked == set()
