"""Training one architecture for real: corpora (``data``), tokenizers (``tokenizer``), the loop (``loop``)."""

from lts.train.loop import TrainSettings, build_model_config, evaluate_loss, resolve_tokenizer, train, train_loop

__all__ = ["TrainSettings", "build_model_config", "evaluate_loss", "resolve_tokenizer", "train", "train_loop"]
