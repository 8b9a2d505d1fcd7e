"""Text generation with a causal LM: transformers' ``generate`` on torch, or an ONNX Runtime KV-cache loop.

Both backends share one decoding recipe, so they agree token for token:

- the logits processors (:func:`build_logits_processors`: temperature, top-k, top-p, in
  transformers' order) are the same objects, applied to float32 scores;
- sampling draws with ``torch.multinomial`` from torch's global RNG, seeded with ``seed``;
- a sequence that emits eos is padded afterwards; decoding stops when all have finished.

Only the settings here drive decoding: a checkpoint's ``generation_config.json`` sampling
defaults (repetition penalty, its own top-k, ...) are not applied, on either backend.
"""

from __future__ import annotations

import gc
import logging
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from lts.core.errors import LTSError
from lts.core.fileio import load_prompts
from lts.core.settings import Boolean, Choice, Integer, Number, Optional, Settings, Text, borrow, setting
from lts.cost.target import TargetSettings, make_target

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx")
DECODE_WINDOW = 64  # steps at the end of a generation whose median is reported as the decode step time


@dataclass(frozen=True)
class GenerateSettings(Settings):
    """What to generate and how. Defaults are those of the Archai reference script:
    sampling, temperature 0.8, top-p 0.95, 128 new tokens (and transformers' implicit top-k 50)."""

    model: str = setting(help="hub id (gpt2) or model folder", check=Text(), flag="model")
    tokenizer: str = setting(help="hub id (gpt2) or folder with tokenizer files (often the model folder)",
                             check=Text(), flag="tokenizer")
    prompt: str = setting("", "text to continue (or --prompts-file)", Text(), flag="prompt", nargs="?")
    prompts_file: str | None = setting(None, "a text file with one prompt per line (blank lines skipped), generated "
                                             "in batches; each prompt's greedy output is what it gets alone",
                                       Optional(Text(nonempty=True)))
    batch_size: int = setting(8, "with --prompts-file: prompts per batch, left-padded with an attention mask",
                              Integer(ge=1))
    max_new_tokens: int = setting(128, "tokens to generate", Integer(ge=1))
    temperature: float = setting(0.8, "sampling temperature > 0", Number())
    top_p: float = setting(0.95, "nucleus sampling mass in (0, 1]", Number(gt=0, le=1))
    top_k: int = setting(50, "keep the k most likely tokens; 0 disables (the reference script used transformers' "
                             "default of 50 without saying so)", Integer(ge=0))
    greedy: bool = setting(False, "always take the most likely token", Boolean())
    seed: int | None = setting(None, "same seed => same text (none: a fresh random seed, reported with --verbose)",
                               Optional(Integer(ge=0)))
    num_return_sequences: int = setting(1, "sequences to sample", Integer(ge=1), flag=("-n", "--num-return-sequences"))
    backend: str = setting("torch", "torch: transformers' generate; onnx: ONNX Runtime with a KV cache (exported "
                                    "once, cached)", Choice(BACKENDS))
    precision: str = borrow(TargetSettings, "precision", help="with --backend onnx: int8 quantizes the weight "
                            "matrices (ONNX Runtime dynamic quantization; cached beside the fp32 graph)")
    target: str = borrow(TargetSettings, "target", help="with --backend onnx: where the graph runs (the Target the "
                         "search measures on)")
    stream: bool = setting(False, "print tokens as they come", Boolean())
    verbose: bool = setting(False, "report load time, time to first token and tokens/s on stderr", Boolean(),
                            flag=("-v", "--verbose"))
    threads: int | None = borrow(TargetSettings, "threads", help="CPU threads for either backend (none: torch's "
                                 "default)")
    truncate_prompt: bool = setting(False, "keep the prompt's last tokens when it does not fit the context "
                                           "(default: refuse)", Boolean())
    trust_remote_code: bool = setting(False, "allow code shipped with the model to run (only for sources you "
                                             "trust)", Boolean())
    onnx_cache_dir: str | None = setting(None, "where ONNX exports are kept (none: onnx/ in the cache root: "
                                               "$LTS_CACHE_DIR, else $XDG_CACHE_HOME/lts, else ~/.cache/lts)",
                                         Optional(Text(nonempty=True)))

    def check(self) -> None:
        if not self.model.strip():
            raise LTSError("no model given: pass a hub id (gpt2) or a model folder")
        if not self.tokenizer.strip():
            raise LTSError("no tokenizer given: pass a hub id (gpt2) or a folder with tokenizer files")
        if self.prompts_file is not None and self.prompt:
            raise LTSError("give a prompt or --prompts-file, not both")
        if self.prompts_file is None and not self.prompt.strip():
            raise LTSError("the prompt is empty: give some text to continue (or --prompts-file FILE)")
        if self.prompts_file is not None and self.num_return_sequences > 1:
            raise LTSError("--prompts-file generates one sequence per prompt: use --num-return-sequences 1")
        if self.prompts_file is not None and self.stream:
            raise LTSError("--stream prints one sequence as it comes: it does not go with --prompts-file")
        if not self.greedy and self.temperature <= 0:
            raise LTSError(f"--temperature must be > 0 when sampling, got {self.temperature} "
                           f"(use --greedy for deterministic decoding)")
        if self.greedy and self.num_return_sequences > 1:
            raise LTSError("--greedy gives one answer: --num-return-sequences > 1 needs sampling")
        if self.stream and self.num_return_sequences > 1:
            raise LTSError("--stream prints one sequence as it comes: use --num-return-sequences 1")
        if self.precision != "fp32" and self.backend != "onnx":
            raise LTSError(f"--precision {self.precision} needs --backend onnx (the torch backend runs the model "
                           "as it is stored)")


@dataclass
class GenerationResult:
    """Texts and timings (seconds) of one run; ``token_ids`` is (num_return_sequences, prompt+new)."""

    texts: list[str]
    token_ids: list[list[int]]
    prompt_tokens: int
    new_tokens: int  # decoding steps taken (per sequence; fewer than asked if all hit eos); batches: the most
    seed: int | None
    backend: str
    threads: int
    load_s: float = 0.0  # model + tokenizer
    prepare_s: float = 0.0  # onnx: content hash + export (first time) or cache hit + session creation
    exported: bool = False  # onnx: the graph was built now (not found in the cache)
    onnx_builder: str = ""  # onnx: "lts" (the search's own decode graph) or "torch.onnx.export"
    precision: str = "fp32"
    first_token_s: float = 0.0  # from the call to the first new token (prefill + one selection)
    generate_s: float = 0.0  # the whole decode
    token_times_s: list[float] = field(default_factory=list)  # time of each new token since the start
    # onnx: peak resident memory from session creation to the last token, over the RSS just before (what the
    # search's onnx_generation_memory_mb measures); None where the peak cannot be read exactly
    onnx_memory_bytes: int | None = None
    # --prompts-file: texts/token_ids are per prompt, in file order (each as generating it alone would give:
    # no padding, nothing after its eos); prompt_tokens is their sum
    batches: int = 1
    batch_size: int = 1
    generated_tokens: int | None = None  # new tokens of all prompts (batches: up to each one's eos)

    @property
    def decode_step_s(self) -> float:
        """Median time between the last new tokens (up to 64 steps): one decoding step at the final context."""
        gaps = [b - a for a, b in zip(self.token_times_s, self.token_times_s[1:])][-DECODE_WINDOW:]
        return statistics.median(gaps) if gaps else float("nan")

    @property
    def tokens_per_s(self) -> float:
        """New tokens of all sequences per second of decoding (prefill included)."""
        tokens = self.new_tokens * len(self.texts) if self.generated_tokens is None else self.generated_tokens
        return tokens / self.generate_s if self.generate_s > 0 else float("nan")


# ---------------------------------------------------------------------------------------------
# Loading


def model_vocab_size(model: Any) -> int:
    """Rows of the output projection: the ids the model can produce."""
    head = model.get_output_embeddings()
    if head is not None and hasattr(head, "weight"):
        return int(head.weight.shape[0])
    return int(model.config.get_text_config(decoder=True).vocab_size)


def context_length(config: Any) -> int | None:
    """Positions the model can attend over (n_positions / max_position_embeddings), None if unbounded."""
    text = config.get_text_config(decoder=True)
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(text, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_vocab(tokenizer_vocab: int, model_vocab: int, tokenizer_name: str, model_name: str) -> None:
    """Accept an output layer at least as large as the tokenizer (token counts); refuse a smaller one.

    Checkpoints pad their embedding past the tokenizer in many ways (opt-125m: 50,265 tokens,
    50,272 rows; Pythia to a multiple of 128; Qwen2 by ~270 rows), and transformers generates
    with all of them, so any padding is accepted: the rows the tokenizer cannot decode are never
    chosen (:class:`_SuppressUnusedVocab`). A smaller output layer cannot score every token the
    tokenizer makes, so that pairing is refused.
    """
    if tokenizer_vocab > model_vocab:
        raise LTSError(f"tokenizer {tokenizer_name} has {tokenizer_vocab} tokens but model {model_name} can only "
                       f"produce {model_vocab}: they do not belong together (pass the tokenizer the model was "
                       f"trained with)")


def load_model_and_tokenizer(settings: Any) -> tuple[Any, Any, float]:
    """(model in eval mode, float32; tokenizer; seconds). LTSError for every bad source or pairing.

    `settings`: :class:`GenerateSettings`, or any settings with ``model``, ``tokenizer`` (None: the model's
    folder or hub id) and ``trust_remote_code`` (``lts export``'s)."""
    from lts.core.hub import check_source, load_causal_lm, load_tokenizer

    t0 = time.perf_counter()
    source = settings.tokenizer or settings.model
    check_source(settings.model, "model")  # both sources checked before the slow loads start
    check_source(source, "tokenizer")
    tokenizer = load_tokenizer(source, trust_remote_code=settings.trust_remote_code)
    model = load_causal_lm(settings.model, trust_remote_code=settings.trust_remote_code)
    check_vocab(len(tokenizer), model_vocab_size(model), source, settings.model)
    return model, tokenizer, time.perf_counter() - t0


def left_pad(rows: Sequence[Any], pad_id: int | None) -> tuple[Any, Any]:
    """(B, L) ids and attention mask of (1, P_i) prompts, right-aligned: `pad_id` and mask 0 before each."""
    import torch

    width = max(row.shape[1] for row in rows)
    ids = torch.full((len(rows), width), 0 if pad_id is None else pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - row.shape[1]:] = row[0]
        mask[i, width - row.shape[1]:] = 1
    return ids, mask


def until_eos(new: list[int], eos: Any) -> list[int]:
    """New tokens up to and including the first eos (what generating the prompt alone stops at)."""
    stops = set() if eos is None else {eos} if isinstance(eos, int) else set(eos)
    for i, token in enumerate(new):
        if token in stops:
            return new[:i + 1]
    return new


def encode_prompt(tokenizer: Any, prompt: str, max_new_tokens: int, context: int | None, truncate: bool) -> Any:
    """(1, P) int64 ids of `prompt`, checked (or, with `truncate`, cut from the left) to fit the context."""
    import torch

    ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(torch.long)
    if ids.shape[1] == 0:
        raise LTSError("the prompt encodes to no tokens: give some text to continue")
    if context is None or ids.shape[1] + max_new_tokens <= context:
        return ids
    if max_new_tokens >= context:
        raise LTSError(f"--max-new-tokens {max_new_tokens} leaves no room for a prompt: the model's context "
                       f"is {context} tokens")
    room = context - max_new_tokens
    if not truncate:
        raise LTSError(f"the prompt is {ids.shape[1]} tokens and {max_new_tokens} new ones would need "
                       f"{ids.shape[1] + max_new_tokens} positions, but the model's context is {context}: refused "
                       f"(shorten the prompt, lower --max-new-tokens, or pass --truncate-prompt to keep its "
                       f"last {room} tokens)")
    log.warning("prompt truncated from %d to its last %d tokens to fit the model's context of %d with %d new tokens",
                ids.shape[1], room, context, max_new_tokens)
    return ids[:, -room:]


# ---------------------------------------------------------------------------------------------
# The decoding recipe both backends share


class _SuppressUnusedVocab:
    """Padded vocabularies: ids the tokenizer cannot decode (>= its size) are never chosen."""

    def __init__(self, first_unused: int) -> None:
        self.first_unused = first_unused

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        scores[:, self.first_unused:] = -float("inf")
        return scores


def build_logits_processors(settings: GenerateSettings, tokenizer_vocab: int | None = None,
                            model_vocab: int | None = None) -> Any:
    """The LogitsProcessorList both backends apply to float32 scores (B, V), in transformers' order."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    procs = LogitsProcessorList()
    if tokenizer_vocab is not None and model_vocab is not None and tokenizer_vocab < model_vocab:
        procs.append(_SuppressUnusedVocab(tokenizer_vocab))
    if settings.greedy:
        return procs
    if settings.temperature != 1.0:
        procs.append(TemperatureLogitsWarper(float(settings.temperature)))
    if settings.top_k > 0:
        procs.append(TopKLogitsWarper(top_k=settings.top_k))
    if settings.top_p < 1.0:
        procs.append(TopPLogitsWarper(top_p=float(settings.top_p)))
    return procs


def special_ids(model: Any, tokenizer: Any) -> tuple[Any, int | None]:
    """(eos id or ids, pad id) from the checkpoint's generation config, its config, then the tokenizer."""
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None)
    if eos is None:
        eos = getattr(model.config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    pad = getattr(gen, "pad_token_id", None)
    if pad is None:
        pad = tokenizer.pad_token_id
    if pad is None:  # like the reference script: pad with eos
        pad = eos[0] if isinstance(eos, (list, tuple)) else eos
    return eos, pad


class TimingStreamer:
    """A generate-style streamer (``put``/``end``) that stamps each new token and forwards to another.

    ``times`` are seconds since ``start`` at which each decoding step produced its token(s).
    """

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner
        self.start = time.perf_counter()
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if self._prompt_seen:
            self.times.append(time.perf_counter() - self.start)
        self._prompt_seen = True
        if self.inner is not None:
            self.inner.put(value)

    def end(self) -> None:
        if self.inner is not None:
            self.inner.end()


def text_streamer(tokenizer: Any, on_text: Callable[[str], None]) -> Any:
    """transformers' TextStreamer (decodes whole words, holds back split UTF-8), writing through `on_text`."""
    from transformers import TextStreamer

    class CallbackStreamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            on_text(text + ("\n" if stream_end else ""))

    return CallbackStreamer(tokenizer, skip_prompt=False, skip_special_tokens=True)


def generate_torch(model: Any, input_ids: Any, settings: GenerateSettings, processors: Any,
                   eos_token_id: Any, pad_token_id: int | None, streamer: Any = None,
                   attention_mask: Any = None) -> Any:
    """transformers' ``generate`` with the KV cache; the checkpoint's sampling defaults are not applied.
    `attention_mask`: 0 over left padding (None: none)."""
    import torch
    from transformers import GenerationConfig

    base = model.generation_config
    # Only our processors decide: a checkpoint's generation_config.json would otherwise fill
    # in its own sampling defaults (and transformers its implicit top_k=50).
    model.generation_config = GenerationConfig(bos_token_id=getattr(base, "bos_token_id", None),
                                               eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    sample = not settings.greedy
    config = GenerationConfig(
        max_new_tokens=settings.max_new_tokens, do_sample=sample, num_beams=1,
        num_return_sequences=settings.num_return_sequences, use_cache=True,
        temperature=1.0, top_p=1.0, top_k=0 if sample else None,
        eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    try:
        with torch.inference_mode():
            mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
            return model.generate(input_ids, attention_mask=mask, generation_config=config,
                                  logits_processor=processors, streamer=streamer)
    finally:
        model.generation_config = base


def generate_onnx(onnx_model: Any, input_ids: Any, settings: GenerateSettings, processors: Any,
                  eos_token_id: Any, pad_token_id: int | None, streamer: Any = None, attention_mask: Any = None) -> Any:
    """The same decode on ONNX Runtime (lts.generate.onnx_kv); each prompt row is repeated
    num_return_sequences times, as ``generate`` does. `attention_mask`: 0 over left padding (None: none)."""
    import torch

    with torch.inference_mode():
        n = settings.num_return_sequences
        ids = input_ids.repeat_interleave(n, 0)
        mask = None if attention_mask is None else attention_mask.repeat_interleave(n, 0)
        return onnx_model.generate(ids, settings.max_new_tokens, processors, do_sample=not settings.greedy,
                                   eos_token_id=eos_token_id, pad_token_id=pad_token_id, streamer=streamer,
                                   attention_mask=mask)


def _encode_prompts(settings: GenerateSettings, texts: Sequence[str], tokenizer: Any, model: Any) -> list[Any]:
    """Each text as (1, P) ids fitted to the context; a prompt of a file that does not fit names its number."""
    prompts = []
    for n, text in enumerate(texts, 1):
        try:
            prompts.append(encode_prompt(tokenizer, text, settings.max_new_tokens, context_length(model.config),
                                         settings.truncate_prompt))
        except LTSError as exc:
            if settings.prompts_file is None:
                raise
            raise LTSError(f"prompt {n} of {settings.prompts_file}: {exc}") from None
    return prompts


@dataclass
class _OnnxSession:
    """The ONNX backend's graph as a running session, and the memory window it is measured in."""

    model: Any  # lts.generate.onnx_kv.OnnxKVModel
    target: Any
    memory_base: int  # RSS before the session: onnx_generation_memory_mb counts from here
    exact_peak: bool  # the target reads its peak since reset_peak_memory() exactly
    exported: bool
    prepare_s: float

    def memory_bytes(self) -> int | None:
        """Peak memory of session + generation over the RSS before them; None where the peak cannot be read."""
        return self.target.peak_memory_bytes() - self.memory_base if self.exact_peak else None


def _onnx_session(settings: GenerateSettings, model: Any, threads: int) -> _OnnxSession:
    """Export the KV graph (or find it cached), then open it on the settings' target: the prepare time."""
    from lts.generate.onnx_kv import OnnxKVModel, cached_kv_onnx

    t0 = time.perf_counter()
    folder, exported = cached_kv_onnx(model, settings.onnx_cache_dir, precision=settings.precision)
    target = make_target(settings.target, threads)
    gc.collect()
    memory_base = target.memory_bytes()  # the window of onnx_generation_memory_mb: session + generation
    exact_peak = target.reset_peak_memory()
    onnx_model = OnnxKVModel(folder, target)
    return _OnnxSession(onnx_model, target, memory_base, exact_peak, exported, time.perf_counter() - t0)


def _generate_in_batches(prompts: list[Any], batch_size: int, generate: Callable[[Any, Any, Any], Any], pad: Any,
                         eos: Any) -> tuple[list[list[int]], int, TimingStreamer, dict[str, Any]]:
    """Every prompt, shortest first in left-padded batches: (each prompt's ids as generating it alone gives them,
    in the given order; the most steps a batch took; the first batch's timing; the result's batch fields)."""
    ids: list[list[int]] = [[] for _ in prompts]
    steps, timing = 0, None
    order = sorted(range(len(prompts)), key=lambda i: prompts[i].shape[1])  # alike lengths: little padding
    chunks = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
    for chunk in chunks:
        batch_timing = TimingStreamer()
        batch, mask = left_pad([prompts[i] for i in chunk], pad)
        out = generate(batch, mask, batch_timing)
        timing = timing or batch_timing  # the first batch's: its time to first token is the user's wait
        steps = max(steps, out.shape[1] - batch.shape[1])
        for row, i in zip(out.tolist(), chunk):
            ids[i] = row[batch.shape[1] - prompts[i].shape[1]:batch.shape[1]] + until_eos(row[batch.shape[1]:], eos)
    extra = dict(batches=len(chunks), batch_size=batch_size,
                 generated_tokens=sum(len(row) - p.shape[1] for row, p in zip(ids, prompts)))
    return ids, steps, timing, extra


def run(settings: GenerateSettings, on_text: Callable[[str], None] | None = None) -> GenerationResult:
    """Load, (export,) generate and decode. With ``settings.stream``, text goes to `on_text` as it comes.

    With ``settings.prompts_file``: every prompt of the file, shortest first in batches of
    ``settings.batch_size`` (left-padded, attention mask), results back in file order.
    """
    from lts.core.hub import check_source

    check_source(settings.model, "model")  # fail fast, before torch and transformers are imported
    check_source(settings.tokenizer, "tokenizer")
    texts = load_prompts(settings.prompts_file) if settings.prompts_file is not None else (settings.prompt,)
    import torch

    threads = settings.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    model, tokenizer, load_s = load_model_and_tokenizer(settings)
    prompts = _encode_prompts(settings, texts, tokenizer, model)
    processors = build_logits_processors(settings, len(tokenizer), model_vocab_size(model))
    eos, pad = special_ids(model, tokenizer)
    onnx = _onnx_session(settings, model, threads) if settings.backend == "onnx" else None

    def generate(ids: Any, mask: Any, streamer: Any) -> Any:
        if onnx is not None:
            return generate_onnx(onnx.model, ids, settings, processors, eos, pad, streamer, mask)
        return generate_torch(model, ids, settings, processors, eos, pad, streamer, mask)

    seed = settings.seed if settings.seed is not None else int.from_bytes(os.urandom(4), "little")
    torch.manual_seed(seed)
    start = time.perf_counter()
    extra: dict[str, Any] = {}
    if settings.prompts_file is None:
        timing = TimingStreamer(text_streamer(tokenizer, on_text) if settings.stream and on_text else None)
        out = generate(prompts[0], None, timing)
        ids = out.tolist()
        steps = out.shape[1] - prompts[0].shape[1]
    else:
        ids, steps, timing, extra = _generate_in_batches(prompts, settings.batch_size, generate, pad, eos)
    generate_s = time.perf_counter() - start
    memory = onnx.memory_bytes() if onnx is not None else None

    outputs = [tokenizer.decode(row, skip_special_tokens=True) for row in ids]
    return GenerationResult(
        texts=outputs, token_ids=ids, prompt_tokens=sum(int(p.shape[1]) for p in prompts),
        new_tokens=steps, seed=None if settings.greedy else seed,
        backend=settings.backend, threads=threads, load_s=load_s,
        prepare_s=onnx.prepare_s if onnx is not None else 0.0, exported=onnx is not None and onnx.exported,
        onnx_builder=onnx.model.meta.get("builder", "torch.onnx.export") if onnx is not None else "",
        precision=settings.precision,
        first_token_s=timing.times[0] if timing.times else float("nan"), generate_s=generate_s,
        token_times_s=list(timing.times) if settings.prompts_file is None else [], onnx_memory_bytes=memory,
        **extra)


def describe(result: GenerationResult) -> str:
    """The --verbose summary: load time, time to first token, tokens/s and the conditions."""
    onnx = ""
    if result.backend == "onnx":
        graph = "the search's decode graph" if result.onnx_builder == "lts" else "torch.onnx export"
        if result.precision != "fp32":
            graph += f", {result.precision} weights (dynamic quantization)"
        onnx = f", onnx {'built' if result.exported else 'cached'} ({graph}) + session {result.prepare_s:.2f} s"
    seed = "" if result.seed is None else f", seed {result.seed}"
    if len(result.token_times_s) > 1:
        onnx += (f"; decode step {result.decode_step_s * 1e3:.2f} ms at {result.prompt_tokens + result.new_tokens} "
                 f"tokens (median of the last {min(DECODE_WINDOW, len(result.token_times_s) - 1)})")
    if result.onnx_memory_bytes is not None:
        onnx += f"; session + generation memory {result.onnx_memory_bytes / 2**20:.1f} MiB"
    if result.generated_tokens is not None:
        work = (f"{len(result.texts)} prompts ({result.prompt_tokens} tokens) in {result.batches} batches of up to "
                f"{result.batch_size}; {result.generated_tokens} new tokens in {result.generate_s:.3f} s; "
                f"time to first token (first batch)")
    else:
        work = (f"prompt {result.prompt_tokens} tokens; {result.new_tokens} new tokens x {len(result.texts)} in "
                f"{result.generate_s:.3f} s; time to first token")
    return (f"load {result.load_s:.2f} s{onnx}; {work} "
            f"{result.first_token_s * 1000:.1f} ms; {result.tokens_per_s:.1f} tokens/s "
            f"(backend {result.backend}, {result.threads} threads{seed})")


__all__ = ["GenerateSettings", "GenerationResult", "run", "describe", "build_logits_processors",
           "load_model_and_tokenizer", "encode_prompt", "generate_torch", "generate_onnx", "check_vocab",
           "model_vocab_size", "left_pad", "until_eos"]
