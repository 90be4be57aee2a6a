"""The package's layering (docs/architecture.md), read from the source with ``ast``.

Data flows one way: front-ends (cli/, worker/) -> study and set-up (evaluate/, setup/, batch/)
-> pipeline -> the BodyPix port (bodypix/) and the refinement stages (refine/) -> model runtime
(runtime/) -> settings, result, errors.  Every import of a package module counts, module-level
or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "core" / "bodypix_gimp"

BASE = {"errors", "settings", "result", "imageio"}
MODELS = BASE | {"runtime"}
CORE = MODELS | {"bodypix", "refine", "pipeline", "render"}
# Top-level unit (first part of the module name) -> the other units it may import.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "settings": {"errors"},
    "result": {"errors", "settings"},
    "imageio": {"errors"},
    "render": {"errors", "result"},
    "runtime": {"errors", "settings"},
    "bodypix": MODELS,
    "refine": MODELS,
    "pipeline": MODELS | {"bodypix", "refine"},
    "worker": CORE,
    "evaluate": CORE | {"setup"},  # bench_convert times the converter
    "batch": CORE,
    "setup": BASE | {"runtime"},
    "cli": CORE | {"worker", "evaluate", "setup", "batch", "__init__"},
    "__init__": BASE | {"runtime", "pipeline"},
}
# Function-local imports of package modules only where they buy start-up time: the CLI builds
# its parser without loading the pipeline; batch/ loads the optional Ray engine only when asked.
LAZY_OK = {"cli", "batch"}
# Modules whose function-local imports measure something: the memory a fresh process has
# before it loads the pipeline.
LAZY_MODULES = {"evaluate.scale"}


def modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = list(f.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1] or ["__init__"]
        out[".".join(parts)] = f
    return out


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, bool, int]]:
    """(imported package module, inside a function, line) for every import in one module."""
    pkg = name.split(".") if path.name == "__init__.py" and name != "__init__" else name.split(".")[:-1]
    tree = ast.parse(path.read_text())
    local = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("bodypix_gimp"):
                mod = node.module.removeprefix("bodypix_gimp").lstrip(".")
            else:
                continue
            for alias in node.names:
                sub = f"{mod}.{alias.name}" if mod else alias.name
                out.append((sub if sub in known else (mod or "__init__"), id(node) in local, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("bodypix_gimp."):
                    out.append((alias.name.removeprefix("bodypix_gimp."), id(node) in local, node.lineno))
    return out


def graph() -> dict[str, list[tuple[str, bool, int]]]:
    mods = modules()
    return {m: [i for i in imports(m, p, set(mods)) if i[0] != m] for m, p in mods.items()}


def unit(module: str) -> str:
    return module.split(".")[0]


def test_every_unit_has_a_rule() -> None:
    assert {unit(m) for m in modules()} <= set(ALLOWED)


def test_imports_go_down_the_layers_only() -> None:
    wrong = [f"{m}:{line} imports {t}" for m, edges in graph().items() for t, _, line in edges
             if unit(t) != unit(m) and unit(t) not in ALLOWED[unit(m)]]
    assert wrong == []


def test_no_import_circles() -> None:
    # imports inside functions count too: a start-up import does not make a circle acceptable
    g = {m: {t for t, _, _ in edges} for m, edges in graph().items()}
    circles, done = [], set()

    def walk(m: str, path: list[str]) -> None:
        if m in path:
            circles.append(" -> ".join(path[path.index(m):] + [m]))
            return
        if m in done:
            return
        for t in sorted(g.get(m, ())):
            walk(t, path + [m])
        done.add(m)

    for m in sorted(g):
        walk(m, [])
    assert circles == []


def test_function_local_imports_only_in_the_front_ends() -> None:
    hidden = [f"{m}:{line} imports {t}" for m, edges in graph().items() for t, lazy, line in edges
              if lazy and unit(m) not in LAZY_OK and m not in LAZY_MODULES]
    assert hidden == []


def test_the_core_never_imports_gimp() -> None:
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "gi" or n.startswith("gi.") for n in names), path
