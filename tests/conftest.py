"""Shared fixtures: a tiny tokenizer and tiny GPT-2 models, made locally (no hub)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent

# No test reads or writes the user's caches. The libraries read where theirs are once, when they are imported
# (huggingface_hub, transformers and datasets fix HF_HOME and every folder under it in module constants), so these
# are set here, at import, before any of them is imported, for the whole session (one folder per xdist worker):
# every process of the session sees them, and tests/clirun.py's fork server, started later, inherits them, so a
# forked CLI sees the same as a fresh one. The HF folders the user may have moved (hub, datasets, assets, modules,
# xet, token) are removed from the environment so that they follow HF_HOME, as the libraries' defaults do, and a
# test that gives a CLI an HF_HOME of its own moves them all. LTS reads $LTS_CACHE_DIR when it uses it: each test
# gets an empty one of its own (``isolated_caches``), so no test sees what another cached.
SESSION_CACHE_VARS = ("HF_HOME", "XDG_CACHE_HOME", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "MPLCONFIGDIR")
FOLLOWING_VARS = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE", "HUGGINGFACE_ASSETS_CACHE",
                  "HF_XET_CACHE", "HF_TOKEN_PATH", "HF_MODULES_CACHE", "HF_DATASETS_CACHE",
                  "HF_DATASETS_DOWNLOADED_DATASETS_PATH", "HF_DATASETS_EXTRACTED_DATASETS_PATH", "TRANSFORMERS_CACHE",
                  "PYTORCH_TRANSFORMERS_CACHE", "PYTORCH_PRETRAINED_BERT_CACHE", "TORCH_HOME",
                  "PYTORCH_KERNEL_CACHE_PATH", "TORCH_EXTENSIONS_DIR")  # under HF_HOME or XDG_CACHE_HOME once unset
TEST_CACHE_VARS = ("LTS_CACHE_DIR",)
SESSION_CACHES = Path(tempfile.mkdtemp(prefix="lts-test-caches-"))
for _var in SESSION_CACHE_VARS:
    os.environ[_var] = str(SESSION_CACHES / _var.lower())
for _var in FOLLOWING_VARS:
    os.environ.pop(_var, None)
for _var in TEST_CACHE_VARS:
    os.environ[_var] = str(SESSION_CACHES / _var.lower())  # session fixtures, built before any test's own


@pytest.fixture(scope="session", autouse=True)
def fork_server() -> None:
    """The CLIs' fork server, started before any test can change the environment it would inherit
    (``clirun.start_server``)."""
    from clirun import start_server

    start_server()


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path_factory, monkeypatch) -> Path:
    """Every test runs with ``$LTS_CACHE_DIR`` in an empty folder of its own (the libraries' caches: the session's,
    set above)."""
    root = tmp_path_factory.mktemp("caches")
    for var in TEST_CACHE_VARS:
        monkeypatch.setenv(var, str(root / var.lower()))
    return root


@pytest.fixture(scope="session")
def tiny_text() -> str:
    from lts.train.tokenizer import builtin_english_text

    return builtin_english_text()[:200_000]


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory, tiny_text) -> Path:
    from lts.train.tokenizer import train_bpe_tokenizer

    tok = train_bpe_tokenizer(tiny_text.split("\n\n"), vocab_size=512)
    out = tmp_path_factory.mktemp("tokenizer")
    tok.save_pretrained(out)
    return out


def _make_tiny_model(out: Path, tokenizer_dir: Path, n_layer: int = 2, n_embd: int = 64,
                    n_inner: int = 128, n_head: int = 2, seed: int = 0) -> Path:
    """Save a randomly initialised tiny GPT-2 (+ its tokenizer) as a HF model folder."""
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from lts.families.gpt2 import ArchConfig

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = ArchConfig(n_layer, n_embd, n_inner, n_head, vocab_size=len(tok), n_positions=128)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(cfg.to_hf_config(bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def make_tiny_model():
    """The factory: ``make_tiny_model(out, tokenizer_dir, n_layer=2, n_embd=64, n_inner=128, n_head=2, seed=0)``."""
    return _make_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    return _make_tiny_model(tmp_path_factory.mktemp("tiny_model"), tiny_tokenizer_dir)


# ---------------------------------------------------------------------------- the fast tier

def pytest_addoption(parser):
    parser.addoption("--fast", action="store_true",
                     help="the edit-test loop: leave out the tests marked heavy (whole searches, training runs, "
                          "clusters, the browser, the fault suite); about a minute on 2 cores")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--fast"):
        return
    heavy = [item for item in items if item.get_closest_marker("heavy")]
    if heavy:
        config.hook.pytest_deselected(items=heavy)
        items[:] = [item for item in items if not item.get_closest_marker("heavy")]


# ---------------------------------------------------------------------------- no silent skips in CI

NO_SKIP = "LTS_NO_SKIP"  # .ci/run sets it: a test whose requirement is missing fails instead of skipping


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With ``$LTS_NO_SKIP=1``, a skip (Ray, the browser, root for the /dev/shm test, ...) is a failure.

    CI installs every requirement, so a skip there means a promised check silently did not run.
    Expected failures (``xfail``) are not skips and stay as they are.
    """
    outcome = yield
    report = outcome.get_result()
    if os.environ.get(NO_SKIP) == "1" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped where ${NO_SKIP}=1 (every requirement must be present): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole module skipped while it is collected (``pytest.importorskip`` at module level, as
    tests/search/test_ray.py does for Ray): its tests never become items, so the hook above never sees them, and
    the session would end green without them. With ``$LTS_NO_SKIP=1`` that skip is a collection error."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get(NO_SKIP) == "1" and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (f"{collector.nodeid}: every test of it skipped where ${NO_SKIP}=1 (every requirement "
                           f"must be present): {reason}")


# ---------------------------------------------------------------------------- the fault suite's counts

_FAULT_CASES: list[dict] = []  # one entry per fault case that ran (tests/test_faults.py records it)


def pytest_runtest_logreport(report):
    if report.when == "call":
        _FAULT_CASES.extend(value for name, value in report.user_properties if name == "fault_case")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """A markdown table of what the fault suite tried and what held, when any of its cases ran."""
    if not _FAULT_CASES:
        return
    clis = ["search.py", "train.py", "generate_text.py", "benchmark.py", "lts evaluate"]
    clis += sorted({c["cli"] for c in _FAULT_CASES} - set(clis))
    write = terminalreporter.write_line
    terminalreporter.write_sep("-", "fault and bad-input suite (tests/test_faults.py)")
    write("| CLI | cases tried | held (exit 2, one line, no traceback, nothing written) | did not hold |")
    write("| --- | ---: | ---: | --- |")
    for cli in clis + ["total"]:
        cases = [c for c in _FAULT_CASES if cli in (c["cli"], "total")]
        if not cases:
            continue
        held = sum(c["held"] for c in cases)
        missed = ", ".join(c["id"] for c in cases if not c["held"]) if cli != "total" else ""
        name = f"`{'python -m ' + cli if cli.startswith('lts ') else cli}`" if cli != "total" else "**total**"
        write(f"| {name} | {len(cases)} | {held} | {missed or ('—' if cli != 'total' else '')} |")
    kinds = sorted({c["kind"] for c in _FAULT_CASES})
    write("")
    write("| fault | cases tried | held |")
    write("| --- | ---: | ---: |")
    for kind in kinds:
        cases = [c for c in _FAULT_CASES if c["kind"] == kind]
        write(f"| {kind} | {len(cases)} | {sum(c['held'] for c in cases)} |")


def pytest_unconfigure(config):
    import shutil

    shutil.rmtree(SESSION_CACHES, ignore_errors=True)
