"""Text generation: transformers' ``generate`` on torch, or ONNX Runtime with a KV cache (``onnx_kv``),
one decoding recipe."""

from lts.generate.decode import (
    GenerateSettings,
    GenerationResult,
    TimingStreamer,
    build_logits_processors,
    check_vocab,
    describe,
    encode_prompt,
    generate_onnx,
    generate_torch,
    load_model_and_tokenizer,
    run,
)

__all__ = ["GenerateSettings", "GenerationResult", "TimingStreamer", "build_logits_processors", "check_vocab",
           "describe", "encode_prompt", "generate_onnx", "generate_torch", "load_model_and_tokenizer", "run"]
