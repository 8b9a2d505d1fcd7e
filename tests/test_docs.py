"""The manual holds together: every relative link resolves, the README stays short, the results pages are what
benchmarks/results_pages.py writes (generated, never edited by hand), and every benchmark it documents still
imports and runs."""

from __future__ import annotations

import ast
import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]

# [text](target) and ![alt](target); the target ends at whitespace or ')'; an optional "title" is ignored.
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE = re.compile(r"`[^`\n]*`")


def links(text: str) -> list[str]:
    text = CODE.sub("", FENCE.sub("", text))  # links inside code are not links
    return LINK.findall(text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    out: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, re.M):
        base, n = slug(heading), 0
        while (candidate := base if n == 0 else f"{base}-{n}") in out:
            n += 1
        out.add(candidate)
    return out


def test_link_pattern_finds_links_and_images():
    assert links("see [a](docs/a.md#x) and ![p](../assets/p.png) `[not](x.md)`") == ["docs/a.md#x",
                                                                                    "../assets/p.png"]
    assert slug("INT8 as the deployment target: `--precision int8`") == "int8-as-the-deployment-target---precision-int8"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path):
    broken = []
    for target in links(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = page if not path_part else (page.parent / path_part).resolve()
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_readme_is_short():
    lines = README.read_text().count("\n")
    assert lines <= 250, f"README.md has {lines} lines; move detail into docs/"


def test_readme_links_every_command_page():
    text = README.read_text()
    for name in ("search", "train", "generate", "compare", "evaluate", "report", "measuring", "platforms",
                 "extending", "testing", "history"):
        assert f"docs/{name}.md" in text, name
    assert "docs/results/README.md" in text


def committed_models(dest: Path) -> Path:
    """models/ as committed (HEAD), extracted under `dest`: default-front.md documents that front, and a search of
    your own replaces the working tree's models/ (the README's first command does). Outside a git checkout (an
    unpacked release) the working tree's models/ is the committed one."""
    if not (REPO / ".git").exists():
        return REPO / "models"
    proc = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "HEAD", "models"], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return dest / "models"


def test_results_pages_are_generated(tmp_path: Path):
    """Every page under docs/results/ is what the generator writes, default-front.md included: from the committed
    models/, so a stale page fails whatever models/ holds now."""
    models = committed_models(tmp_path / "committed")
    out = tmp_path / "pages"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.results_pages", "--models", str(models),
                           "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    committed = {p.name: p.read_text() for p in (DOCS / "results").glob("*.md")}
    generated = {p.name: p.read_text() for p in out.glob("*.md")}
    # the page names the folder it was made from: the extracted copy stands for the repository's models/
    generated["default-front.md"] = generated["default-front.md"].replace(f"{models.parent.as_posix()}/", "")
    assert sorted(committed) == sorted(generated)
    stale = [name for name in generated if committed[name] != generated[name]]
    assert not stale, (f"docs/results/{', '.join(stale)} differ from what benchmarks/results_pages.py writes "
                       "(default-front.md: from the committed models/): run python -m benchmarks.results_pages")
    for name, text in generated.items():
        assert text.startswith("Generated by `benchmarks/results_pages.py` from "), name
        assert "do not edit" in text.splitlines()[0], name


def test_settings_page_is_generated():
    """docs/settings.md is made from the settings' declarations (lts.core.settings), never typed."""
    proc = subprocess.run([sys.executable, str(DOCS / "settings_page.py"), "--check"], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr


BENCHMARKS = sorted(p.stem for p in (REPO / "benchmarks").glob("*.py") if p.stem != "__init__")
SCRIPTS = [name for name in BENCHMARKS if not name.startswith("_")]  # the rest: what the benchmarks share
WORKERS = ("_optimum_worker", "_ctranslate2_worker", "_peer_worker")  # run inside a peer's own venv
PEER_ONLY = ("optimum", "ctranslate2")  # installed in a peer's venv only: never in the project's
OPTIONAL = ("ray", "accelerate")  # extras (distributed, bench): resolved where installed
HEAVY = ("torch", "transformers", "matplotlib")  # what a measuring child must not import with the benchmark
RESOLVE = r"""
import importlib, importlib.util, json, sys
errors = {}
for key, imports in json.loads(sys.argv[1]).items():
    for module, name, optional in imports:
        try:
            if optional and importlib.util.find_spec(module.split(".")[0]) is None:
                continue  # an extra not installed here
            found = importlib.import_module(module)
            if name is not None and not hasattr(found, name):
                importlib.import_module(f"{module}.{name}")  # from package import submodule
        except Exception as exc:
            errors.setdefault(key, []).append(f"{module}{'.' + name if name else ''}: {type(exc).__name__}: {exc}")
print(json.dumps(errors))
"""


def imports(path: Path) -> tuple[list[tuple[str, str | None]], list[tuple[str, str | None]]]:
    """(the imports at `path`'s module level, those inside its functions) as (module, name or None) pairs."""
    tree = ast.parse(path.read_text())
    deferred_nodes = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                      for n in ast.walk(f)}
    top: list[tuple[str, str | None]] = []
    deferred: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            pairs = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            pairs = [(node.module, alias.name) for alias in node.names]
        else:
            continue
        (deferred if id(node) in deferred_nodes else top).extend(pairs)
    return top, deferred


@pytest.fixture(scope="module")
def unresolved() -> dict[str, list[str]]:
    """Per benchmark module, what did not resolve: the module itself (``importlib.import_module``, which runs every
    import at its top) and each import inside its functions, all in one fresh interpreter."""
    todo = {}
    for name in BENCHMARKS:
        _, deferred = imports(REPO / "benchmarks" / f"{name}.py")
        todo[name] = [(f"benchmarks.{name}", None, False)] + [
            (module, attr, module.split(".")[0] in OPTIONAL) for module, attr in deferred
            if module.split(".")[0] not in PEER_ONLY]
    proc = subprocess.run([sys.executable, "-c", RESOLVE, json.dumps(todo)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("module", BENCHMARKS)
def test_benchmark_module_imports_resolve(module, unresolved):
    """Every module of benchmarks/ imports (its lts imports at its top), and every import its functions make
    resolves: benchmarks are not run by the suite, so a rename in lts would otherwise break one unseen
    (latency_kinds.py imported a moved write_onnx)."""
    top, deferred = imports(REPO / "benchmarks" / f"{module}.py")
    ours = [f"{m}.{n}" if n else m for m, n in deferred if m.split(".")[0] in ("lts", "benchmarks")]
    assert not ours, f"benchmarks/{module}.py imports {', '.join(ours)} inside a function: put it at the top"
    peer_only = [m for m, _ in top + deferred if m.split(".")[0] in PEER_ONLY]
    assert not peer_only or module in WORKERS, f"{', '.join(peer_only)}: only a peer's worker may import it"
    assert not unresolved.get(module), "\n".join(unresolved[module])


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_scripts_explain_themselves(script):
    """Every benchmark runs as ``python -m benchmarks.<name>`` from the repository root and answers -h."""
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{script}", "-h"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout


def test_measuring_benchmarks_keep_their_children_light():
    """A benchmark that measures through lts's evaluator imports no torch, transformers or matplotlib at its top:
    every measuring child imports the benchmark's module again (multiprocessing's __mp_main__), and a fresh
    evaluation's seconds would count those imports."""
    measuring = [name for name in SCRIPTS if any(
        m in ("lts.cost.evaluator", "lts.cost.measure", "lts.search.job")
        for m, _ in imports(REPO / "benchmarks" / f"{name}.py")[0])]
    assert "evaluators" in measuring and "latency_kinds" in measuring, measuring
    code = ("import importlib, json, sys\n"
            "for name in sys.argv[2:]:\n"
            "    importlib.import_module('benchmarks.' + name)\n"
            "    heavy = [m for m in json.loads(sys.argv[1]) if m in sys.modules]\n"
            "    if heavy: sys.exit(f'benchmarks/{name}.py imports {heavy} at its top')\n")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(HEAVY), *measuring], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_peer_workers_start_in_a_venv_without_the_project(tmp_path: Path):
    """A peer's worker runs in the peer's own venv, which has neither lts nor numpy: started as the benchmark starts
    it (benchmarks._peer_venv.worker_env, ``python -m``, from any folder), in a venv with nothing installed, each
    worker's module loads and answers -h."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    code = ("import subprocess, sys\n"
            "import benchmarks._peer_venv as peer\n"
            "python, cwd = sys.argv[1], sys.argv[2]\n"
            "for module in sys.argv[3:]:\n"
            "    p = subprocess.run([python, '-m', module, '-h'], env=peer.worker_env(python), cwd=cwd,\n"
            "                       capture_output=True, text=True)\n"
            "    if p.returncode or 'usage:' not in p.stdout: sys.exit(f'{module}: {p.stderr[-1500:]}')\n")
    workers = [f"benchmarks.{name}" for name in WORKERS if name != "_peer_worker"]
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "venv" / "bin" / "python"), str(tmp_path),
                           *workers], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
