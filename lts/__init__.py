"""LTS: Lightweight Transformer Search for decoder-only language models (GPT-2 and Llama-style).

Training-free: quality is estimated by the non-embedding parameter count, cost is
measured on this machine from the model's ONNX graph, and NSGA-II (pymoo) finds
the Pareto front.

Subpackages: ``lts.core`` (shared: errors, files, settings and CLI, hub, processes, ONNX graph writing),
``lts.families`` (what an architecture is: the Family and Arch protocols; GPT-2 in ``lts.families.gpt2``,
Llama in ``lts.families.llama``),
``lts.cost`` (objectives, Target, measurement, evaluator), ``lts.search`` (space,
NSGA-II, report, job), ``lts.train``, ``lts.generate``, ``lts.compare`` (benchmark.py).
"""

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

from lts.core.errors import LTSError
from lts.families import archid_of, load_arch


class _RegisterWithTransformers(importlib.abc.MetaPathFinder):
    """Registers the families' own model types (the per-layer GPT-2's, ``lts.families.gpt2.hf``) as soon as
    transformers is imported, so that ``AutoModelForCausalLM.from_pretrained`` loads such a model folder in any
    process that imported ``lts`` (before or after transformers), without importing transformers (and torch)
    for ``import lts`` itself."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "transformers":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_register(module: Any) -> None:
            exec_module(module)
            _register()

        loader.exec_module = exec_then_register
        return spec


def _register() -> None:
    """Never breaks the import of transformers: a transformers (or torch) that cannot take the registration
    simply does not know the per-layer type (``lts.families.gpt2.hf`` says so when a command needs it)."""
    from lts.families import register_with_transformers

    try:
        register_with_transformers()
    except Exception:  # noqa: BLE001 - e.g. no torch, or a transformers too old for the config class
        pass


if "transformers" in sys.modules:
    _register()
elif not any(isinstance(f, _RegisterWithTransformers) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWithTransformers())



def __getattr__(name: str) -> Any:
    """``lts.ArchConfig``: GPT-2's architecture, imported when asked for (nothing in LTS imports a family's package
    but the family itself: tests/test_layout.py)."""
    if name == "ArchConfig":
        return importlib.import_module("lts.families.gpt2").ArchConfig
    raise AttributeError(f"module 'lts' has no attribute {name!r}")


__all__ = ["ArchConfig", "LTSError", "archid_of", "load_arch"]
__version__ = "0.1.0"
