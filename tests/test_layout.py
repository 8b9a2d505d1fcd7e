"""The package's shape, checked: subpackage layering, no import cycles, no private names across modules."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "lts"
# Which subpackages each one may import (besides itself). `core` is the shared base.
ALLOWED = {
    "core": set(),
    "families": {"core"},  # what an architecture is (GPT-2 and its graphs, spaces, transformers classes)
    "cost": {"core", "families"},
    "search": {"core", "cost", "families"},
    "train": {"core", "cost", "families"},
    "generate": {"core", "cost", "families"},
    "compare": {"core", "generate", "families"},
    "testing": {"core", "cost", "search", "families"},  # the Protocols' contract suites, for third-parties
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported lts module, names taken from it) for every import in the file, function-level ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lts" and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names if a.name.split(".")[0] == "lts")
    return out


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(module: str, names: list[str]) -> set[str]:
    """The lts modules an import statement loads (``from lts.core import fileio`` loads lts.core.fileio)."""
    targets = {module} if module in MODULES else set()
    targets |= {f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES}
    return targets


def test_subpackages_import_only_what_their_layer_allows():
    assert set(ALLOWED) == {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    bad = []
    for name, path in MODULES.items():
        parts = name.split(".")
        if len(parts) < 3:  # lts/__init__.py and lts/__main__.py sit above the layers
            continue
        for module, _ in _imports(path):
            sub = module.split(".")[1] if module.count(".") else None
            if sub and sub != parts[1] and sub not in ALLOWED[parts[1]]:
                bad.append(f"{name} imports {module}")
    assert not bad, bad


def test_no_private_names_taken_across_modules():
    bad = [f"{name} takes {module}.{n}" for name, path in MODULES.items() for module, names in _imports(path)
           for n in names if n.startswith("_") and module != name]
    bad += [f"{p.relative_to(REPO)} takes {module}.{n}" for p in (REPO / "tests").rglob("*.py")
            for module, names in _imports(p) for n in names if n.startswith("_")]
    assert not bad, bad


def test_no_import_cycles():
    graph = {name: set().union(*[_resolve(m, ns) for m, ns in _imports(path)] or [set()]) - {name}
             for name, path in MODULES.items()}
    # Importing a submodule imports its packages first: those edges are not cycles we wrote.
    graph = {n: {t for t in targets if not n.startswith(t + ".")} for n, targets in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_tests_are_laid_out_like_the_package():
    for test in (REPO / "tests").rglob("test_*.py"):
        rel = test.relative_to(REPO / "tests")
        if len(rel.parts) > 1:
            assert (PACKAGE / rel.parts[0] / "__init__.py").is_file(), f"{rel}: no lts.{rel.parts[0]} subpackage"
    conftest_users = [p for p in (REPO / "tests").rglob("*.py") if p != Path(__file__).resolve()
                      and any(n.module == "conftest" if isinstance(n, ast.ImportFrom) else
                              any(a.name == "conftest" for a in n.names)
                              for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
                              if isinstance(n, (ast.Import, ast.ImportFrom)))]
    assert not conftest_users, conftest_users


def test_no_module_imports_a_family_but_the_family_itself():
    """A family is one package: LTS reaches GPT-2 or Llama only through the registry (``lts.families``), so a new
    family needs no edit elsewhere and no GPT-2 assumption hides outside ``lts/families/gpt2``."""
    families = {p.name for p in (PACKAGE / "families").iterdir() if (p / "__init__.py").is_file()}
    assert {"gpt2", "llama"} <= families
    bad = []
    for name, path in MODULES.items():
        for module, names in _imports(path):
            for target in _resolve(module, names) | {module}:
                parts = target.split(".")
                if len(parts) >= 3 and parts[1] == "families" and parts[2] in families:
                    if name.split(".")[:3] != parts[:3]:
                        bad.append(f"{name} imports {target}")
    assert not bad, bad
