"""The Optimum peer's worker (benchmarks/optimum_peer.py has the whole story), run inside the Optimum venv as
``python -m benchmarks._optimum_worker --model DIR --prompt IDS ...`` by :func:`benchmarks.optimum_peer.run_optimum`.

It exports the saved model folder with Optimum (``ORTModelForCausalLM.from_pretrained(export=True,
use_cache=True)``, CPU execution provider, the session options given as JSON: ``CPUTarget.session_settings()``),
timed apart as ``export_s``, decodes greedily (eos disabled, one warm-up, then `repeats` timed runs, a streamer
stamping each token) and prints one JSON line on stdout. Only the standard library at import time: the venv
has Optimum, its transformers 4.x, torch and onnxruntime, and nothing of this project.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from benchmarks._peer_worker import dist_version, quiet_libraries, worker_main

PACKAGES = ("optimum-onnx", "optimum", "transformers", "onnxruntime", "torch")


class Stamps:
    """A generate streamer like lts.generate.TimingStreamer: the first ``put`` is the prompt, then one per token."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if self._prompt_seen:
            self.times.append(time.perf_counter() - self.start)
        self._prompt_seen = True

    def end(self) -> None:
        pass


def session_options(settings_json: str) -> Any:
    """An onnxruntime SessionOptions with the settings of ``CPUTarget.session_settings()`` (as JSON)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    for name, value in json.loads(settings_json).items():
        if name == "execution_mode":
            value = getattr(ort.ExecutionMode, value)
        elif name == "graph_optimization_level":
            value = getattr(ort.GraphOptimizationLevel, value)
        setattr(so, name, value)
    return so


def export(model_dir: str, so: Any) -> tuple[Any, float]:
    """(Optimum's model exported from `model_dir` with session options `so`, seconds the export took)."""
    from optimum.onnxruntime import ORTModelForCausalLM

    t0 = time.perf_counter()
    model = ORTModelForCausalLM.from_pretrained(model_dir, export=True, use_cache=True,
                                                provider="CPUExecutionProvider", session_options=so)
    return model, time.perf_counter() - t0


def time_decode(model: Any, prompt: list[int], new_tokens: int, repeats: int, pad: int | None) -> dict[str, list]:
    """Greedy decoding of `prompt`, eos disabled: one warm-up, then `repeats` timed runs; ids and timings."""
    import torch
    from transformers import GenerationConfig

    input_ids = torch.tensor([prompt], dtype=torch.long)
    config = model.config
    if pad is None:
        pad = next((v for v in (config.pad_token_id, config.eos_token_id) if isinstance(v, int)), 0)
    # eos disabled (as benchmarks/generation.py's own backends): exactly new_tokens tokens, eos a token like any.
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=None,
                                               pad_token_id=pad)
    gen = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           num_beams=1, use_cache=True, eos_token_id=None, pad_token_id=pad)

    def run(streamer: Stamps) -> list[int]:
        with torch.inference_mode():
            out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), generation_config=gen,
                                 streamer=streamer)
        return [int(x) for x in out[0]]

    run(Stamps())  # warm-up
    totals, firsts, per_token, ids = [], [], [], []
    for _ in range(repeats):
        stamps = Stamps()
        ids = run(stamps)
        totals.append(time.perf_counter() - stamps.start)
        firsts.append(stamps.times[0])
        per_token += [b - a for a, b in zip(stamps.times, stamps.times[1:])]
    if len(ids) != len(prompt) + new_tokens:
        raise RuntimeError(f"Optimum made {len(ids) - len(prompt)} tokens, not {new_tokens}")
    return {"ids": ids, "totals": totals, "firsts": firsts, "per_token": per_token}


def options(model: Any, so: Any) -> dict[str, Any]:
    """How Optimum set itself up: IO binding, KV cache, ONNX files, the session settings it used."""
    import torch

    sessions = [s for s in (getattr(model, "session", None), getattr(model, "model", None))
                if hasattr(s, "get_session_options")]
    so_used = sessions[0].get_session_options() if sessions else so
    return {
        "use_io_binding": getattr(model, "use_io_binding", None),
        "can_use_cache": getattr(model, "can_use_cache", None),
        "is_merged": getattr(model, "is_merged", None),
        "onnx_inputs": [i.name for i in sessions[0].get_inputs()] if sessions else None,
        "providers": sessions[0].get_providers() if sessions else None,
        "model_path": str(getattr(model, "path", "")) or None,
        "intra_op_num_threads": so_used.intra_op_num_threads,
        "inter_op_num_threads": so_used.inter_op_num_threads,
        "execution_mode": str(so_used.execution_mode),
        "graph_optimization_level": str(so_used.graph_optimization_level),
        "torch_threads": torch.get_num_threads(),
    }


def measure(args: argparse.Namespace) -> dict:
    """Export, warm-up, timed runs: ``{"ids", "totals", "firsts", "per_token", "export_s", "versions", "options"}``."""
    quiet_libraries()
    import torch

    torch.set_num_threads(args.threads)
    so = session_options(args.session_options)
    model, export_s = export(args.model, so)
    prompt = [int(x) for x in args.prompt.split(",")]
    timed = time_decode(model, prompt, args.new_tokens, args.repeats, args.pad)
    return {**timed, "export_s": export_s, "versions": {name: dist_version(name) for name in PACKAGES},
            "options": options(model, so)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Optimum's worker, run inside its venv by benchmarks.optimum_peer.")
    p.add_argument("--model", required=True, help="a saved transformers GPT-2 folder")
    p.add_argument("--prompt", required=True, help="comma-separated prompt token ids")
    p.add_argument("--new-tokens", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--repeats", type=int, required=True)
    p.add_argument("--pad", type=int, default=None, help="pad token id (default the model's pad, else eos, else 0)")
    p.add_argument("--session-options", default="{}", help="CPUTarget.session_settings() as JSON")
    args = p.parse_args(argv)
    return worker_main(lambda: measure(args))


if __name__ == "__main__":
    sys.exit(main())
