"""The torch side of benchmark.py: one model's process loads it, generates, and reports.

``child_main`` is the target of the process ``lts.compare.runner.run_model`` starts through
``lts.core.procs`` (forked from a server that has torch and transformers imported). It sends
messages the parent reads while it samples the process's RSS: ``load`` (loading times,
parameters, baseline RSS), one ``prompt`` message per prompt, then ``done`` (peak RSS) or
``error`` (the stage and the reason). Definitions of every figure: ``lts.compare.runner``.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from lts.compare.settings import BenchSettings, diversity, median_spread
from lts.core.hub import family_config
from lts.core.procs import MIB, peak_rss_bytes, rss_bytes
from lts.generate.decode import TimingStreamer, check_vocab, model_vocab_size

log = logging.getLogger(__name__)


def _rss_peak_mb() -> float:
    return peak_rss_bytes() / MIB


def _rss_now_mb() -> float:
    return rss_bytes() / MIB


def load_model(folder: str, settings: BenchSettings) -> tuple[Any, Any]:
    """Tokenizer + causal LM from a local folder (safetensors preferred, no remote code unless asked)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = "auto" if settings.dtype == "auto" else getattr(torch, settings.dtype)
    kwargs: dict[str, Any] = {"trust_remote_code": settings.trust_remote_code, "local_files_only": True}
    if any(Path(folder).glob("*.safetensors")):
        kwargs["use_safetensors"] = True
    config = family_config(Path(folder) / "config.json")  # e.g. a per-layer GPT-2, written as lts_gpt2 or by hand
    if config is not None:
        kwargs["config"] = config
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=settings.trust_remote_code, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kwargs)
    model.to(settings.device)
    model.eval()
    return tok, model


def warm_imports(folder: str, settings: BenchSettings) -> None:
    """Import the model's and tokenizer's code before the clock starts (untimed, no weights).

    transformers imports a model's module lazily on first use; without this the first
    timed load would include seconds of imports and the baseline RSS would miss them.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kwargs = {"trust_remote_code": settings.trust_remote_code}
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True, **kwargs)
        with torch.device("meta"):
            AutoModelForCausalLM.from_config(config, **kwargs)
        AutoTokenizer.from_pretrained(folder, local_files_only=True, **kwargs)
    except Exception:  # the timed load reports the real error
        log.debug("import warm-up failed", exc_info=True)


def _sync(settings: BenchSettings) -> None:
    if settings.device == "cuda":
        import torch

        torch.cuda.synchronize()


def _settings(job: dict[str, Any]) -> BenchSettings:
    s = dict(job["settings"])
    s["models"], s["prompts"] = tuple(s["models"]), tuple(s["prompts"])
    return BenchSettings(**s)


def _start(folder: str, settings: BenchSettings) -> Any:
    """Untimed: torch and transformers imported and set up, the model's code imported. Returns torch."""
    import torch
    import transformers  # noqa: F401  (imported before the clock starts)

    transformers.logging.set_verbosity_error()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda requested but torch sees no CUDA device")
    warm_imports(folder, settings)
    return torch


def _timed_loads(folder: str, settings: BenchSettings) -> tuple[Any, Any, list[float]]:
    """Load the model `repeats` times, each after the previous one is collected: the last (tokenizer, model) and
    the seconds of every load."""
    import gc

    load_times = []
    tok = model = None
    for _ in range(settings.repeats):
        tok = model = None
        gc.collect()
        t0 = time.perf_counter()
        tok, model = load_model(folder, settings)
        _sync(settings)
        load_times.append(time.perf_counter() - t0)
    return tok, model, load_times


def _load_figures(tok: Any, model: Any, folder: str, load_times: list[float]) -> dict[str, Any]:
    """The ``load`` message's figures of the loaded model; a smaller output layer than the tokenizer raises."""
    params = list({id(p): p for p in model.parameters()}.values())
    n_params = sum(p.numel() for p in params)
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    dtypes = sorted({str(p.dtype).replace("torch.", "") for p in params})
    check_vocab(len(tok), model_vocab_size(model), folder, folder)  # a smaller output layer: a failed row
    load_s, load_spread = median_spread(load_times)
    return dict(load_s=load_s, load_spread_s=load_spread, parameters=n_params, param_mb=param_bytes / MIB,
                dtype="/".join(dtypes))


def _generation_kwargs(tok: Any, model: Any, settings: BenchSettings) -> dict[str, Any]:
    """What every ``generate`` of the run is given besides the prompt and the token count."""
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if pad is None:
        pad = getattr(model.config, "eos_token_id", None)
    gen_kwargs: dict[str, Any] = {"do_sample": settings.do_sample, "pad_token_id": pad}
    rows = model_vocab_size(model)
    if rows > len(tok):  # a padded embedding (opt-125m: 7 rows): ids the tokenizer cannot decode are never
        gen_kwargs["suppress_tokens"] = list(range(len(tok), rows))  # chosen, as in generate_text.py
    if settings.do_sample:
        gen_kwargs.update(temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p)
    return gen_kwargs


def _generate_once(tok: Any, model: Any, settings: BenchSettings, gen_kwargs: dict[str, Any], prompt: str,
                   n: int) -> tuple[str, int, float, float]:
    """One seeded ``generate`` of exactly `n` tokens: (text, new tokens, seconds, seconds to the first token)."""
    import torch

    enc = tok(prompt, return_tensors="pt").to(settings.device)
    length = enc["input_ids"].shape[1]
    context = getattr(model.config, "max_position_embeddings", None)
    if context and length + n > context:
        raise ValueError(f"prompt ({length} tokens) + max_new_tokens ({n}) exceeds the model's "
                         f"context of {context} positions")
    torch.manual_seed(settings.seed)
    _sync(settings)
    timer = TimingStreamer()
    t0 = timer.start
    with torch.inference_mode():
        ids = model.generate(**enc, max_new_tokens=n, min_new_tokens=n, streamer=timer, **gen_kwargs)
    _sync(settings)
    t1 = time.perf_counter()
    new = ids[0, enc["input_ids"].shape[1]:]
    ttft = timer.times[0] if timer.times else t1 - t0
    return tok.decode(new, skip_special_tokens=True), int(new.numel()), t1 - t0, ttft


def _prompt_figures(index: int, prompt: str, settings: BenchSettings,
                    generate: Callable[[str, int], tuple[str, int, float, float]]) -> dict[str, Any]:
    """The ``prompt`` message: `repeats` generations of one prompt, their median and spread."""
    times, ttfts, text, n_new = [], [], None, 0
    for _ in range(settings.repeats):
        t, n_new, dt, ttft = generate(prompt, settings.max_new_tokens)
        text = t if text is None else text  # same seed each repeat: the texts agree
        times.append(dt)
        ttfts.append(ttft)
    gen_s, gen_spread = median_spread(times)
    uni, bi = diversity(text)
    return dict(index=index, text=text, new_tokens=n_new, gen_s=gen_s, gen_spread_s=gen_spread,
                ttft_s=statistics.median(ttfts), diversity=uni, distinct2=bi)


def _failure(stage: str, exc: BaseException) -> str:
    """The ``error`` message's one line: the stage, the exception and its first line, out of memory said so."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    msg = f"{stage}: {type(exc).__name__}" + (f": {first[:300]}" if first else "")
    if isinstance(exc, MemoryError) or "out of memory" in first.lower():
        msg += " (out of memory)"
    return msg


def worker(conn: Any, job: dict[str, Any]) -> int:
    """Child entry: load the model `repeats` times, generate for every prompt, send a message after each stage."""
    settings = _settings(job)
    folder = job["folder"]

    def emit(kind: str, **msg: Any) -> None:
        conn.send((kind, msg))

    stage = "import"
    try:
        torch = _start(folder, settings)
        baseline = _rss_now_mb()

        stage = "load"
        tok, model, load_times = _timed_loads(folder, settings)
        emit("load", **_load_figures(tok, model, folder, load_times), baseline_rss_mb=baseline,
             threads=torch.get_num_threads())

        stage = "generate"
        gen_kwargs = _generation_kwargs(tok, model, settings)

        def generate(prompt: str, n: int) -> tuple[str, int, float, float]:
            return _generate_once(tok, model, settings, gen_kwargs, prompt, n)

        if settings.warmup_tokens:
            generate(job["prompts"][0], min(settings.warmup_tokens, settings.max_new_tokens))
        for i, prompt in enumerate(job["prompts"]):
            emit("prompt", **_prompt_figures(i, prompt, settings, generate))
        gpu = torch.cuda.max_memory_allocated() / MIB if settings.device == "cuda" else None
        emit("done", peak_rss_mb=_rss_peak_mb(), gpu_peak_mb=gpu)
        return 0
    except BaseException as exc:  # report, don't crash: the parent turns this into a failed row
        emit("error", message=_failure(stage, exc), peak_rss_mb=_rss_peak_mb())
        log.debug("worker failed", exc_info=True)
        return 1


def child_main(conn: Any, job: dict[str, Any]) -> None:
    """Entry of a model's process (its stdout/stderr already go to a log the parent reads on a crash)."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # files are local already: the timed load must not touch the network
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    worker(conn, job)
