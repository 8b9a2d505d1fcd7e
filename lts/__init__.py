"""LTS: Lightweight Transformer Search for GPT-2 architectures.

Training-free: quality is estimated by the non-embedding parameter count, cost is
measured on this machine from the model's ONNX graph, and NSGA-II (pymoo) finds
the Pareto front.
"""

from lts.errors import LTSError
from lts.space import ArchConfig, SearchSpace, archid_of

__all__ = ["ArchConfig", "SearchSpace", "LTSError", "archid_of"]
__version__ = "0.1.0"
