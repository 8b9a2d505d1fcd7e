"""LTS: Lightweight Transformer Search for GPT-2 architectures.

Training-free: quality is estimated by the non-embedding parameter count, cost is
measured on this machine from the model's ONNX graph, and NSGA-II (pymoo) finds
the Pareto front.

Subpackages: ``lts.core`` (shared: ArchConfig, errors, files, CLI, hub, processes),
``lts.cost`` (objectives, graph, Target, measurement, evaluator), ``lts.search`` (space,
NSGA-II, report, job), ``lts.train``, ``lts.generate``, ``lts.compare`` (benchmark.py).
"""

from lts.core.arch import ArchConfig, archid_of
from lts.core.errors import LTSError

__all__ = ["ArchConfig", "LTSError", "archid_of"]
__version__ = "0.1.0"
