"""How a graph is measured: :class:`MeasureSettings` (tokens, repeats, time budget, timeout).

With the Target, part of every evaluation's cache key (``EvalSettings.measure_key``): change one of
them and the figures are measured again. Borrowed, not redeclared, by the commands that offer them
(``lts search --seq-len``, ``lts evaluate --context``, ...).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from lts.core.errors import LTSError
from lts.core.settings import Integer, Number, Settings, setting


@dataclass(frozen=True)
class MeasureSettings(Settings):
    """How a graph is measured (with the Target, part of the cache key: change it and results are re-measured)."""

    seq_len: int = setting(1024, "tokens per timed forward pass (batch 1)", Integer(ge=1))
    context: int = setting(512, "tokens in the KV cache when a decoding step is timed "
                                "(onnx_decode_latency_s); generation memory decodes up to it", Integer(ge=1))
    warmup: int = setting(2, "untimed runs before a timing", Integer(ge=0), flag=False)
    min_repeats: int = setting(5, "timed runs at least", Integer(ge=1), flag=False)
    max_repeats: int = setting(30, "timed runs at most", Integer(ge=1), flag=False)
    rel_err: float = setting(0.03, "stop repeating once the median's standard error is within this fraction",
                             Number(ge=0), flag=False)
    min_seconds: float = setting(0.15, "seconds of timed runs at least, however fast the graph (split over its "
                                       "rounds)", Number(ge=0), flag=False)
    max_seconds: float = setting(1.5, "seconds of timed runs at most", Number(ge=0), flag=False)
    timeout_s: float = setting(300.0, "seconds before a measurement is failed", Number(gt=0), flag="--timeout")

    def check(self) -> None:
        if self.min_repeats > self.max_repeats:
            raise LTSError("min_repeats must not exceed max_repeats")
        if self.min_seconds > self.max_seconds:
            raise LTSError(f"need min_seconds <= max_seconds, got {self.min_seconds} and {self.max_seconds}")

    def key(self) -> dict[str, Any]:
        """Fields that change what is measured (timeout only decides failure, not values)."""
        d = asdict(self)
        d.pop("timeout_s")
        return d
