"""Load a model, config or tokenizer from a local folder or a Hugging Face hub id, with plain errors.

The small API other modules use::

    hub_offline() / hub_reachable()                   -> the one offline rule and the one connection probe
    go_offline_if_hub_unreachable()                   -> set the HF offline switches (before importing transformers)
    check_source(name, what="model")                  -> None, or LTSError at once (no transformers import)
    local_snapshot(name, trust_remote_code=False)     -> the local folder of a model's files (download when online)
    check_weight_files(folder, spec)                  -> LTSError for a corrupt or cut-short *.safetensors (no torch)
    load_config(name, trust_remote_code=False)        -> transformers PretrainedConfig
    load_tokenizer(name, trust_remote_code=False)     -> transformers tokenizer
    load_causal_lm(name, dtype=None, trust_remote_code=False) -> AutoModelForCausalLM, eval mode

``name`` is a folder (``models/<archid>``, a train.py output, any HF folder) or a hub id
(``gpt2``, ``org/model``). A folder that exists always wins over a hub id. Hub ids are
served from the local hub cache first; the hub is only asked when it answers a quick
connection probe, so an offline machine gets one clear LTSError at once instead of
half a minute of retries. Weights load safely: safetensors when present, otherwise
``torch.load(weights_only=True)``; remote code runs only with ``trust_remote_code=True``.
"""

from __future__ import annotations

import functools
import json
import os
import socket
from pathlib import Path
from typing import Any, Callable, TypeVar
from urllib.parse import urlparse

from lts.core.errors import LTSError, first_line

T = TypeVar("T")

OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json", "tokenizer.model", "spiece.model",
                   "vocab.txt")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def is_local(name: str | os.PathLike) -> bool:
    """True when `name` names an existing folder (then it is never looked up on the hub)."""
    return Path(name).expanduser().is_dir()


def looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else with slashes (or ./, ~) is meant as a folder."""
    return (name.startswith((".", "/", "~", "\\")) or name.count("/") > 1 or name.endswith(("/", os.sep))
            or "\\" in name)


def hub_offline() -> bool:
    """True when the user switched the hub off (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE or HF_DATASETS_OFFLINE)."""
    return any(os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on") for var in OFFLINE_VARS)


@functools.lru_cache(maxsize=1)
def _probe(host: str, port: int, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """False at once when offline mode is set; else one quick TCP probe of the hub endpoint (HF_ENDPOINT), cached.

    transformers and datasets retry for ~50 s before giving up on an unreachable hub; this lets
    LTS fall back (a local tokenizer) or fail with one clear message in seconds.
    """
    if hub_offline():
        return False
    try:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    except Exception:  # pragma: no cover - huggingface_hub always ships with transformers
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    return _probe(url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80), timeout_s)


def go_offline_if_hub_unreachable() -> bool:
    """Set the HF offline switches when the hub cannot be reached; returns True if offline.

    Call before transformers/datasets are imported (they read these variables at import),
    so that cached models and datasets still load and missing ones fail at once.
    """
    if hub_reachable():
        return False
    for var in OFFLINE_VARS:
        os.environ[var] = "1"
    return True


def has_weights(folder: Path) -> bool:
    return any((folder / name).is_file() for name in WEIGHT_FILES) or any(folder.glob("*.safetensors"))


def safetensors_problem(path: Path) -> str | None:
    """Why `path` is not a readable safetensors file (junk, empty, cut short), or None when its header holds.

    Reads the 8-byte header length and the JSON header only (no tensor data, no torch): every
    tensor's byte range must lie inside the file.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{size} bytes, too short for a header"
            n = int.from_bytes(head, "little")
            if n < 2 or n > size - 8:
                return f"header length {n} does not fit the file's {size} bytes"
            header = json.loads(f.read(n).decode("utf-8"))
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "its header is not JSON"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    data = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data):
            return f"tensor {name!r} lies outside the file (cut short?)"
    return None


def check_weight_files(folder: Path, spec: str) -> None:
    """LTSError when a ``*.safetensors`` file in `folder` is corrupt or incomplete (checked before any load)."""
    for path in sorted(folder.glob("*.safetensors")):
        problem = safetensors_problem(path)
        if problem is not None:
            raise LTSError(f"{spec}: {path.name} is not a valid safetensors file ({problem}); "
                           f"the weights are corrupt or incomplete: save or download them again")


def check_config_file(folder: Path, spec: str) -> None:
    """LTSError when `folder`'s config.json is not a JSON object."""
    path = folder / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LTSError(f"{spec}: cannot read config.json ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LTSError(f"{spec}: config.json is not valid JSON ({first_line(exc)})") from None
    if not isinstance(data, dict):
        raise LTSError(f"{spec}: config.json must hold a JSON object, got {type(data).__name__}")


def not_available(name: str, what: str) -> LTSError:
    """The one message for a hub id that cannot be had here, saying why and what to do instead."""
    if hub_offline():
        why = "HF_HUB_OFFLINE is set and it is not in the local hub cache"
    elif not hub_reachable():
        why = "the Hugging Face hub cannot be reached (offline?) and it is not in the local hub cache"
    else:
        why = "the Hugging Face hub has no such model (or it is private/gated)"
    return LTSError(f"{what} {name!r} is not a local folder and could not be fetched: {why}; "
                    f"pass a local folder instead (e.g. one written by train.py)")


def _in_hub_cache(name: str, filenames: tuple[str, ...]) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return False
    for filename in filenames:
        try:
            if isinstance(try_to_load_from_cache(name, filename), str):
                return True
        except Exception:  # a malformed id: not cached
            return False
    return False


def check_source(name: str | os.PathLike, what: str = "model") -> None:
    """Fail fast, before transformers is even imported, when `name` cannot be loaded at all.

    Passes for an existing folder, or a hub id that is in the local hub cache or may be
    fetched (hub reachable and not offline). `what` is "model" or "tokenizer".
    """
    name = str(name)
    if not name.strip():
        raise LTSError(f"{what} name is empty")
    path = Path(name).expanduser()
    if path.is_dir():
        if what == "model" and (path / "config.json").is_file():  # a broken folder fails here, before torch
            check_config_file(path, name)
            check_weight_files(path, name)
        return
    if path.exists():
        raise LTSError(f"{what} {name!r} is a file; pass a folder or a hub id such as 'gpt2'")
    if looks_like_path(name):
        raise LTSError(f"{what} folder not found: {name}")
    files = ("config.json",) if what == "model" else TOKENIZER_FILES
    if _in_hub_cache(name, files):
        return
    if not hub_reachable():
        raise not_available(name, what)


def _resolve(name: str | os.PathLike, what: str, load: Callable[..., T]) -> T:
    """Call ``load(source, local_files_only=...)`` for a folder or a hub id, mapping failures to LTSError."""
    name = str(name)
    check_source(name, what)
    path = Path(name).expanduser()
    if path.is_dir():
        return load(str(path), local_files_only=True)
    try:  # the local hub cache first: works offline, no network round trip
        return load(name, local_files_only=True)
    except OSError:
        pass
    if not hub_reachable():
        raise not_available(name, what)
    try:
        return load(name, local_files_only=False)
    except OSError:
        raise not_available(name, what) from None


def _remote_code_error(exc: Exception, name: str, what: str) -> LTSError | None:
    text = str(exc)
    if "trust_remote_code" in text:
        return LTSError(f"{what} {name!r} needs custom code from its folder/repo; pass trust_remote_code "
                        f"(--trust-remote-code) only if you trust its source")
    return None


def load_config(name: str | os.PathLike, trust_remote_code: bool = False) -> Any:
    """The model's ``AutoConfig``; LTSError when it is missing, malformed or needs remote code."""
    from transformers import AutoConfig

    path = Path(str(name)).expanduser()
    if path.is_dir() and not (path / "config.json").is_file():
        raise LTSError(f"{name} is not a model folder: it has no config.json")
    if path.is_dir():
        config = family_config(path / "config.json")
        if config is not None:
            return config

    def load(source: str, local_files_only: bool) -> Any:
        try:
            return AutoConfig.from_pretrained(source, local_files_only=local_files_only,
                                              trust_remote_code=trust_remote_code)
        except OSError:
            raise
        except (ValueError, KeyError) as exc:
            err = _remote_code_error(exc, str(name), "model")
            if err is not None:
                raise err from None
            raise LTSError(f"model {str(name)!r}: cannot read its config.json ({first_line(exc)})") from None

    return _resolve(name, "model", load)


# Readers of config.json files that transformers cannot read alone (a per-layer GPT-2 written by hand with
# n_inner / n_head lists): each takes the file and returns a transformers config, or None when it is not one
# of its own, and raises LTSError (one line) when it is one with a wrong architecture. ``lts.families`` adds
# its reader when it is imported, which ``import lts`` does (core imports nothing above it).
CONFIG_READERS: list[Callable[[Path], Any]] = []


def family_config(path: Path) -> Any:
    """The transformers config of `path` when a reader of :data:`CONFIG_READERS` knows it, else None."""
    for read in CONFIG_READERS:
        config = read(path)
        if config is not None:
            return config
    return None


def is_causal_lm_config(config: Any) -> bool:
    """True when transformers' AutoModelForCausalLM knows this config class (or it maps remote code for it)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    if type(config) in MODEL_FOR_CAUSAL_LM_MAPPING:
        return True
    auto_map = getattr(config, "auto_map", None) or {}
    return "AutoModelForCausalLM" in auto_map


def load_causal_lm(name: str | os.PathLike, dtype: Any = None, trust_remote_code: bool = False) -> Any:
    """An ``AutoModelForCausalLM`` in eval mode (float32 unless `dtype` says otherwise).

    Raises LTSError when `name` cannot be found, holds no causal LM (e.g. a BERT folder, a
    tokenizer-only folder), has no weights, or needs remote code that was not allowed.
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = load_config(name, trust_remote_code=trust_remote_code)
    if not is_causal_lm_config(config):
        model_type = getattr(config, "model_type", type(config).__name__)
        raise LTSError(f"{name} holds a {model_type!r} model, which is not a causal language model "
                       f"(AutoModelForCausalLM cannot load it)")
    path = Path(str(name)).expanduser()
    if path.is_dir() and not any((path / f).is_file() for f in WEIGHT_FILES):
        raise LTSError(f"{name} has a config.json but no weights ({' or '.join(WEIGHT_FILES[::2])}): "
                       f"an untrained architecture? train it with train.py first")
    if path.is_dir():
        check_weight_files(path, str(name))

    def load(source: str, local_files_only: bool) -> Any:
        try:
            return AutoModelForCausalLM.from_pretrained(
                source, config=config, dtype=dtype or torch.float32, local_files_only=local_files_only,
                trust_remote_code=trust_remote_code, weights_only=True)
        except OSError as exc:
            if path.is_dir():  # a folder that exists: a broken one, not a hub miss
                raise LTSError(f"cannot load the model in {name}: {first_line(exc)}") from None
            raise
        except (ValueError, KeyError, RuntimeError) as exc:
            err = _remote_code_error(exc, str(name), "model")
            if err is not None:
                raise err from None
            raise LTSError(f"cannot load the model {str(name)!r}: {first_line(exc)}") from None
        except Exception as exc:  # safetensors' own error type (a corrupt file the header check let through)
            if type(exc).__name__ != "SafetensorError":
                raise
            raise LTSError(f"cannot load the weights of {str(name)!r}: {first_line(exc)}") from None

    model = _resolve(name, "model", load)
    model.eval()
    return model


def load_tokenizer(name: str | os.PathLike, trust_remote_code: bool = False) -> Any:
    """An ``AutoTokenizer``; LTSError when `name` cannot be found or holds no tokenizer files."""
    from transformers import AutoTokenizer

    path = Path(str(name)).expanduser()
    if path.is_dir() and not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise LTSError(f"{name} holds no tokenizer (none of {', '.join(TOKENIZER_FILES)})")

    def load(source: str, local_files_only: bool) -> Any:
        try:
            tok = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only,
                                                trust_remote_code=trust_remote_code)
        except OSError as exc:
            if path.is_dir():
                raise LTSError(f"cannot load the tokenizer in {name}: {first_line(exc)}") from None
            raise
        except (ValueError, KeyError, TypeError) as exc:
            err = _remote_code_error(exc, str(name), "tokenizer")
            if err is not None:
                raise err from None
            raise LTSError(f"cannot load the tokenizer {str(name)!r}: {first_line(exc)}") from None
        if len(tok) <= 1:  # transformers 5 builds a 1-token tokenizer from files it ignored
            raise LTSError(f"the tokenizer in {name} has {len(tok)} token(s): its vocabulary did not load")
        return tok

    return _resolve(name, "tokenizer", load)


def local_snapshot(spec: str, trust_remote_code: bool = False) -> Path:
    """The local folder holding `spec`'s model files, downloading a hub id first when the hub is reachable.

    For tools that load the model in another process and must not touch the network there
    (the model comparison). Raises LTSError with a one-line reason when the model cannot be used.
    """
    path = Path(spec).expanduser()
    if path.exists():
        return _check_model_folder(path, spec)
    if looks_like_path(spec):
        raise LTSError(f"model folder not found: {spec}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    online = hub_reachable()
    patterns = ["*.json", "*.txt", "*.model", "*.tiktoken", "*.safetensors"] + (["*.py"] if trust_remote_code else [])
    try:
        folder = Path(snapshot_download(spec, allow_patterns=patterns, local_files_only=not online))
        if online and not has_weights(folder):  # an old repo with only pytorch_model*.bin
            folder = Path(snapshot_download(spec, allow_patterns=patterns + ["pytorch_model*.bin*"]))
    except HFValidationError:
        raise LTSError(f"'{spec}' is neither a local folder nor a valid hub id") from None
    except GatedRepoError:
        raise LTSError(f"'{spec}' is gated on the hub: accept its license there and log in (hf auth login)") from None
    except RepositoryNotFoundError:
        raise not_available(spec, "model") from None
    except RevisionNotFoundError as exc:
        raise LTSError(f"'{spec}': {first_line(exc)}") from None
    except LocalEntryNotFoundError:
        raise not_available(spec, "model") from None
    except OSError as exc:  # connection errors, disk full while downloading
        raise LTSError(f"'{spec}': cannot download from the Hugging Face hub ({type(exc).__name__}: "
                       f"{first_line(exc)}): pass a local model folder") from None
    return _check_model_folder(folder, spec)


def _check_model_folder(folder: Path, spec: str) -> Path:
    if not folder.is_dir():
        raise LTSError(f"{spec} is a file, not a model folder")
    if not (folder / "config.json").is_file():
        raise LTSError(f"{spec} has no config.json: not a transformers model folder")
    if not has_weights(folder):
        raise LTSError(f"{spec} has no weights (*.safetensors or pytorch_model.bin): train it first, e.g. train.py")
    check_config_file(folder, spec)
    family_config(folder / "config.json")  # e.g. a per-layer GPT-2's architecture is checked here (one line)
    check_weight_files(folder, spec)
    return folder.resolve()
