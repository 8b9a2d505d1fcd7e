"""Shared CLI plumbing: declared settings + YAML preset + flags -> frozen dataclass, and one-line errors.

Every command follows the same rule: a flag given on the command line overrides the preset (``--config FILE``,
default ``configs/<command>.yaml`` when present), which overrides the declared defaults
(:mod:`lts.core.settings`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import yaml

from lts.core.errors import LTSError
from lts.core.settings import add_flags, declared_default, given_flags

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (exit status 2), without the usage dump.

    With ``settings`` (a :class:`lts.core.settings.Settings` dataclass) and ``preset`` (the preset's name), the
    parser has a flag for every declared setting (:func:`lts.core.settings.add_flags`) and ``--config FILE``;
    :meth:`settings_from` builds the settings from declared defaults < preset < flags, and ``-h`` ends with the
    value every setting takes when its flag is not given. Defaults are declared once, with the setting.
    """

    def __init__(self, *args: Any, settings: type | None = None, preset: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings, self.preset = settings, preset
        if settings is not None:
            add_flags(self, settings)
            if preset is not None:
                self.add_argument("--config", metavar="FILE",
                                  help=f"YAML preset: keys are the settings' names (default: configs/{preset}.yaml "
                                       "when present; it holds only what differs from the defaults below)")

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see -h)\n")

    def format_help(self) -> str:
        text = super().format_help()
        if self.settings is None or self.preset is None:
            return text
        path = default_preset(self.preset)
        try:
            values = effective_defaults(self.settings, load_preset(path, required=False))
        except LTSError as exc:
            return text + f"\ndefaults: unavailable ({exc})\n"
        lines = [f"  {k:<22} {'(none)' if v is None else v}" for k, v in values.items()]
        source = f"{path.name} over the declared defaults" if path.is_file() else "the declared defaults"
        return text + f"\nsettings when no flag is given ({source}):\n" + "\n".join(lines) + "\n"

    def settings_from(self, args: argparse.Namespace, *, preset: Mapping[str, Any] | None = None) -> Any:
        """The settings: declared defaults < the preset (``--config``, else the default one) < the flags given.
        `preset`: use this mapping instead of reading the file (a command that edits it first)."""
        assert self.settings is not None and self.preset is not None
        path = getattr(args, "config", None) or default_preset(self.preset)
        if preset is None:
            preset = self.preset_of(args)
        return build_settings(self.settings, preset, given_flags(self.settings, args), source=str(path))

    def preset_of(self, args: argparse.Namespace) -> dict[str, Any]:
        """The preset in force: ``--config FILE`` (which must exist), else configs/<preset>.yaml if present."""
        assert self.preset is not None
        config = getattr(args, "config", None)
        return load_preset(config or default_preset(self.preset), required=config is not None)


def effective_defaults(cls: type, preset: Mapping[str, Any]) -> dict[str, Any]:
    """Each setting's value when no flag is given: the preset's, else the declared default (required ones left out)."""
    out = {f.name: declared_default(cls, f.name) for f in dataclasses.fields(cls)
           if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    out.update({k: v for k, v in preset.items() if k in out})
    return out


def default_preset(name: str) -> Path:
    """configs/<name>.yaml beside the package (a source checkout), else in the working dir."""
    for base in (REPO_ROOT, Path.cwd()):
        path = base / "configs" / f"{name}.yaml"
        if path.is_file():
            return path
    return REPO_ROOT / "configs" / f"{name}.yaml"


def load_preset(path: str | os.PathLike | None, *, required: bool) -> dict[str, Any]:
    """Read a YAML mapping; a missing default preset is fine, a missing given one is not."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        if required:
            raise LTSError(f"config file not found: {path}")
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0]
        raise LTSError(f"malformed YAML in {path}: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LTSError(f"{path} must hold a mapping of settings, got {type(data).__name__}")
    return data


def build_settings(cls: type[T], preset: Mapping[str, Any], flags: Mapping[str, Any], *, source: str = "config") -> T:
    """Declared defaults < preset < flags (flags that are None were not given)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(preset) - names)
    if unknown:
        raise LTSError(f"unknown setting(s) in {source}: {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    values = dict(preset)
    values.update({k: v for k, v in flags.items() if v is not None and k in names})
    try:
        return cls(**values)
    except TypeError as exc:
        raise LTSError(f"bad settings in {source}: {exc}") from None


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None,
            prog: str | None = None) -> int:
    """Run a script's main; user errors become one line on stderr and exit status 2."""
    prog = prog or (Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "lts")
    logging.basicConfig(level=os.environ.get("LTS_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(main(argv) or 0)
    except LTSError as exc:
        if os.environ.get("RANK", "0") in ("", "0"):  # torchrun's other ranks raise the same error: rank 0 speaks
            print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except FileNotFoundError as exc:
        print(f"{prog}: error: file not found: {exc.filename or exc}", file=sys.stderr)
        return 2
    except PermissionError as exc:
        print(f"{prog}: error: permission denied: {exc.filename or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
