"""Training one architecture for real: its settings (``settings``), corpora (``data``), token shards
(``shards``), the tokenizer (``tokenizer``), the run's tokens (``tokens``), the model (``model``), the loop
(``loop``), checkpoints (``checkpoint``), devices and ranks (``runtime``), the whole run (``run``) and its flags
(``cli``)."""

from lts.train.loop import evaluate_loss, train_loop
from lts.train.model import build_model_config
from lts.train.run import train
from lts.train.settings import TrainSettings
from lts.train.tokenizer import resolve_tokenizer

__all__ = ["TrainSettings", "build_model_config", "evaluate_loss", "resolve_tokenizer", "train", "train_loop"]
