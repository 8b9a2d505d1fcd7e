"""`python -m lts evaluate CONFIG_OR_DIR [--seq-len N] [--json]`: score one architecture."""

from __future__ import annotations

import json
import math
import sys

from lts.cli import ArgumentParser, run_cli


def _evaluate(args) -> int:
    from lts.evaluate import EvalSettings, Evaluator, default_cache_path
    from lts.space import ArchConfig

    config = ArchConfig.load(args.config)
    settings = EvalSettings.create(latency_mode=args.latency_mode, seq_len=args.seq_len, threads=args.threads,
                                   timeout_s=args.timeout)
    if settings.seq_len > config.n_positions:
        from lts.errors import LTSError

        raise LTSError(f"--seq-len {settings.seq_len} exceeds the model's n_positions ({config.n_positions})")
    cache = None if args.no_cache else (args.cache or default_cache_path())
    evaluator = Evaluator(settings, cache)
    result = evaluator.evaluate(config)
    out = {"archid": result.archid, "config": config.to_dict(), **result.objectives(),
           "total_params": result.total_params, "onnx_memory_sampled_mb": result.onnx_memory_sampled_mb,
           "cached": result.cached, "conditions": evaluator.conditions()}
    if args.json:
        print(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()},
                         indent=2))
    else:
        c, hw = evaluator.conditions(), evaluator.hardware
        print(f"archid                {result.archid}")
        print(f"config                n_layer={config.n_layer} n_embd={config.n_embd} n_inner={config.n_inner} "
              f"n_head={config.n_head} vocab_size={config.vocab_size} n_positions={config.n_positions}")
        print(f"non_embedding_params  {result.non_embedding_params:,}")
        print(f"onnx_latency_s        {result.onnx_latency_s:.6f}  (cv {result.onnx_latency_cv:.3f})")
        print(f"onnx_memory_mb        {result.onnx_memory_mb:.1f}")
        print(f"onnx_file_mb          {result.onnx_file_mb:.1f}")
        print(f"eval_seconds          {result.eval_seconds:.2f}" + ("  (from cache)" if result.cached else ""))
        print(f"status                {result.status}")
        print(f"conditions            batch 1, seq_len {c['seq_len']}, {c['threads']} threads, "
              f"latency {c['latency_mode']}, ORT {hw['onnxruntime']}, {hw['cpu']} ({hw['cores']} cores), "
              f"hardware {hw['id']}")
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m lts", description="LTS command-line tools")
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="measure one architecture (a config.json or a models/<archid> folder)")
    ev.add_argument("config", help="config.json, or a folder holding one")
    ev.add_argument("--seq-len", type=int, default=1024, help="tokens in the timed forward (default 1024)")
    ev.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default min(4, cores))")
    ev.add_argument("--latency-mode", choices=["composed", "full"], default="composed")
    ev.add_argument("--timeout", type=float, default=300.0, help="seconds before the measurement is failed")
    ev.add_argument("--cache", help="SQLite cache (default ~/.cache/lts/evaluations.sqlite or $LTS_CACHE_DIR)")
    ev.add_argument("--no-cache", action="store_true", help="measure afresh and store nothing")
    ev.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    return _evaluate(args)


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="python -m lts"))
