"""One declaration per setting: name, type, default, help and check, from which flags, ``-h``, YAML keys and
validation errors all come.

A command's settings are a frozen dataclass whose fields are declared with :func:`setting`::

    @dataclass(frozen=True)
    class GenerateSettings(Settings):
        max_new_tokens: int = setting(128, "tokens to generate", Integer(ge=1))

- the YAML key is the field's name (``max_new_tokens``), the flag its name with dashes
  (``--max-new-tokens``) unless ``flag`` says otherwise (``flag=False``: YAML only);
- the check (an :class:`Integer`, :class:`Number`, :class:`Choice`, ... ) runs when the object is made, from
  whatever source, and its error names the key and the flag: ``max_new_tokens (--max-new-tokens) must be an
  integer >= 1, got 0``; it also gives the flag its argparse type and choices;
- :meth:`Settings.check` holds the checks that involve several settings;
- :func:`borrow` lets a command offer a setting declared elsewhere (``lts search``'s ``--seq-len`` is the
  measurement's ``seq_len``) without declaring its default, help or check a second time.

Why a small adapter over dataclasses rather than pydantic or jsonargparse: the settings already are frozen
dataclasses that the rest of LTS passes around, pickles into child processes, hashes into cache keys and saves
as ``job.json`` (``dataclasses.asdict``); the checks needed are a handful (integers, numbers in a range, one of
a list, strings), and argparse is what every command's ``-h`` and one-line error contract is built on. pydantic
would add a second object model beside dataclasses and its own error format; jsonargparse would replace
argparse and the error contract with its own. This module is the ~200 lines between the two.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from lts.core.errors import LTSError

KEY = "lts.setting"  # the field metadata key holding a setting's Spec
AUTO = ("__auto__",)  # flags of a setting declared with flag=True: --its-name, filled in by spec_of


class Check:
    """Validates (and may normalise) one value; ``argtype`` parses its flag's text."""

    argtype: Callable[[str], Any] | None = str
    choices: Iterable[Any] | None = None

    def __call__(self, label: str, value: Any) -> Any:
        return value

    def describe(self) -> str:
        """What the check accepts, in a few words (the settings reference, docs/settings.md)."""
        return "any value"


def _fail(label: str, what: str, value: Any) -> LTSError:
    return LTSError(f"{label} must be {what}, got {value!r}")


def _bounds(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str:
    """``>= 1``, ``> 0``, or an interval ``in (0, 1]`` when bounded on both sides."""
    low, high = (ge, "[") if ge is not None else (gt, "(") if gt is not None else (None, "")
    top, close = (le, "]") if le is not None else (lt, ")") if lt is not None else (None, "")
    if low is not None and top is not None:
        return f"in {high}{low:g}, {top:g}{close}"
    parts = [f"{op} {v:g}" for op, v in ((">=", ge), (">", gt), ("<=", le), ("<", lt)) if v is not None]
    return " and ".join(parts)


def _within(value: float, ge: float | None, gt: float | None, le: float | None, lt: float | None) -> bool:
    return ((ge is None or value >= ge) and (gt is None or value > gt) and (le is None or value <= le)
            and (lt is None or value < lt))


@dataclass(frozen=True)
class Integer(Check):
    """An int (not a bool), optionally bounded."""

    ge: int | None = None
    gt: int | None = None
    le: int | None = None
    argtype = int

    def __call__(self, label: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or not _within(value, self.ge, self.gt, self.le, None):
            raise _fail(label, self.describe(), value)
        return value

    def describe(self) -> str:
        bounds = _bounds(self.ge, self.gt, self.le, None)
        return "an integer" + (f" {bounds}" if bounds else "")


@dataclass(frozen=True)
class Number(Check):
    """A finite int or float (not a bool), optionally bounded; kept as given."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    argtype = float

    def __call__(self, label: str, value: Any) -> Any:
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or not _within(value, self.ge, self.gt, self.le, self.lt)):
            raise _fail(label, self.describe(), value)
        return value

    def describe(self) -> str:
        bounds = _bounds(self.ge, self.gt, self.le, self.lt)
        return "a number" + (f" {bounds}" if bounds else "")


@dataclass(frozen=True)
class Boolean(Check):
    """true or false (a flag without a value)."""

    argtype = None

    def __call__(self, label: str, value: Any) -> Any:
        if not isinstance(value, bool):
            raise _fail(label, self.describe(), value)
        return value

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class Text(Check):
    """A string; ``nonempty``: with some non-blank text."""

    nonempty: bool = False

    def __call__(self, label: str, value: Any) -> Any:
        if not isinstance(value, str):
            raise _fail(label, "a string", value)
        if self.nonempty and not value.strip():
            raise LTSError(f"{label} is empty")
        return value

    def describe(self) -> str:
        return "a non-empty string" if self.nonempty else "a string"


@dataclass(frozen=True)
class Texts(Check):
    """A list of strings, kept as a tuple (a single string is a list of one)."""

    def __call__(self, label: str, value: Any) -> Any:
        if isinstance(value, str):
            value = (value,)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise _fail(label, self.describe(), value)
        return tuple(value)

    def describe(self) -> str:
        return "a list of strings"


@dataclass(frozen=True)
class Choice(Check):
    """One of a fixed list; ``among`` may be a callable returning it (a registry filled at import time)."""

    among: tuple[str, ...] | Callable[[], Iterable[str]] = ()

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.among() if callable(self.among) else self.among)

    def __call__(self, label: str, value: Any) -> Any:
        if value not in self.choices:
            raise _fail(label, self.describe(), value)
        return value

    def describe(self) -> str:
        return f"one of {', '.join(self.choices)}"


@dataclass(frozen=True)
class Optional(Check):
    """None (meaning what the help says), or a value that passes ``inner``."""

    inner: Check = Text()

    @property
    def argtype(self) -> Any:  # type: ignore[override]
        return self.inner.argtype

    @property
    def choices(self) -> Any:  # type: ignore[override]
        return self.inner.choices

    def __call__(self, label: str, value: Any) -> Any:
        return None if value is None else self.inner(label, value)

    def describe(self) -> str:
        return f"none, or {self.inner.describe()}"


@dataclass(frozen=True)
class Spec:
    """How one setting appears: its help, its check, its flag (``()``: none) and argparse extras."""

    help: str | Callable[[], str]  # a callable for help that lists a registry (read when -h is printed)
    check: Check
    flags: tuple[str, ...]
    group: str | None = None
    metavar: str | None = None
    nargs: str | None = None
    append: bool = False  # the flag may be repeated, each value added to the list
    const: Any = None  # a Boolean flag that sets this value (default: the opposite of the declared default)
    # A resumed run may give it another value (where to write, how many workers, how long to go on); False: a
    # resume must match the run it continues (what the results depend on). See must_match / resumable.
    resumable: bool = False

    @property
    def flag(self) -> str | None:
        """The flag as errors name it (the long form), or None for a YAML-only setting."""
        return next((f for f in self.flags if f.startswith("--")), self.flags[0] if self.flags else None)


def setting(default: Any = dataclasses.MISSING, help: str | Callable[[], str] = "", check: Check | None = None, *,
            factory: Callable[[], Any] | None = None, flag: bool | str | tuple[str, ...] = True,
            group: str | None = None,
            metavar: str | None = None, nargs: str | None = None, append: bool = False, const: Any = None,
            resumable: bool = False) -> Any:
    """Declare a setting: a dataclass field with its help and check. `flag`: True for ``--the-name``, a name or
    names (``"-n", "--num-return-sequences"``; a name without dashes is a positional argument), False for none.
    `resumable`: a resumed run may change it (else it must match the run it continues)."""
    spec = Spec(help, check or Check(), _flags(flag), group, metavar, nargs, append, const, resumable)
    extra: dict[str, Any] = {"default_factory": factory} if factory is not None else {"default": default}
    return dataclasses.field(metadata={KEY: spec}, **extra)


def _flags(flag: bool | str | tuple[str, ...]) -> tuple[str, ...]:
    return (flag,) if isinstance(flag, str) else tuple(flag) if isinstance(flag, tuple) else AUTO if flag else ()


def spec_of(field: dataclasses.Field) -> Spec | None:
    """The field's Spec with its flag filled in (``--field-name`` when declared with ``flag=True``)."""
    spec = field.metadata.get(KEY)
    if spec is not None and spec.flags == AUTO:
        spec = dataclasses.replace(spec, flags=("--" + field.name.replace("_", "-"),))
    return spec


def specs(cls: type) -> dict[str, Spec]:
    """Every declared setting of `cls`, by name, in declaration order."""
    return {f.name: s for f in dataclasses.fields(cls) if (s := spec_of(f)) is not None}


def resumable(cls: type) -> frozenset[str]:
    """The settings of `cls` a resumed run may change (declared ``resumable=True``)."""
    return frozenset(name for name, spec in specs(cls).items() if spec.resumable)


def must_match(settings: Any) -> dict[str, Any]:
    """The values of the declared settings a resumed run must share with the run it continues (JSON-ready:
    tuples as lists), by name: every setting not declared ``resumable``."""
    return {name: list(v) if isinstance(v := getattr(settings, name), tuple) else v
            for name, spec in specs(type(settings)).items() if not spec.resumable}


def label(name: str, spec: Spec) -> str:
    """How an error names a setting: its YAML key, and its flag when it has one."""
    flag = spec.flag
    return name if flag is None or not flag.startswith("-") else f"{name} ({flag})"


def declared_default(cls: type, name: str) -> Any:
    """The default a setting of `cls` is declared with."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def borrow(cls: type, name: str, *, default: Any = dataclasses.MISSING, optional: bool = False,
           **changes: Any) -> Any:
    """Offer `cls`'s setting `name` in another command: the same default, help, check and flag unless `changes`
    (``help=``, ``check=``, ``flag=``, ...) or `default` say otherwise; `optional`: None is allowed too."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    spec = f.metadata[KEY]
    if optional:
        changes.setdefault("check", Optional(spec.check))
    if "flag" in changes:
        changes["flags"] = _flags(changes.pop("flag"))
    spec = dataclasses.replace(spec, **changes)
    if default is not dataclasses.MISSING:
        return dataclasses.field(default=default, metadata={KEY: spec})
    if f.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=f.default_factory, metadata={KEY: spec})
    return dataclasses.field(default=f.default, metadata={KEY: spec})


class Settings:
    """Base of a command's settings dataclass: every declared check runs when an instance is made (its value may
    be normalised, e.g. a list to a tuple), then :meth:`check` for what involves several settings."""

    def __post_init__(self) -> None:
        for name, spec in specs(type(self)).items():
            object.__setattr__(self, name, spec.check(label(name, spec), getattr(self, name)))
        self.check()

    def check(self) -> None:
        """Checks across settings (override); each raises LTSError with one line."""


def add_flags(parser: Any, cls: type) -> None:
    """Add a flag (or positional argument) to an argparse parser for every setting of `cls` that has one.

    Every flag defaults to None ("not given"), so that a preset's value, else the declared default, stands.
    """
    groups: dict[str, Any] = {}
    for name, spec in specs(cls).items():
        if not spec.flags:
            continue
        target = parser if spec.group is None else groups.setdefault(spec.group, parser.add_argument_group(spec.group))
        kwargs: dict[str, Any] = {"help": (spec.help() if callable(spec.help) else spec.help) or None}
        positional = not spec.flags[0].startswith("-")
        if not positional:
            kwargs.update(dest=name, default=None)
        check = spec.check
        if isinstance(check, Boolean) or (isinstance(check, Optional) and isinstance(check.inner, Boolean)):
            const = spec.const if spec.const is not None else not declared_default(cls, name)
            kwargs.update(action="store_const", const=const)
        else:
            if check.argtype is not None and check.argtype is not str:
                kwargs["type"] = check.argtype
            if check.choices is not None:
                kwargs["choices"] = list(check.choices)
            if spec.append:
                kwargs["action"] = "append"
            if spec.nargs is not None:
                kwargs["nargs"] = spec.nargs
            metavar = spec.metavar or {int: "N", float: "X"}.get(check.argtype)  # type: ignore[call-overload]
            if metavar is not None and not kwargs.get("choices") and (not positional or spec.metavar):
                kwargs["metavar"] = metavar
        if positional and spec.nargs in ("?", "*"):
            kwargs["default"] = None
        target.add_argument(*spec.flags, **kwargs)


def given_flags(cls: type, namespace: Any) -> dict[str, Any]:
    """The settings of `cls` given on the command line (a flag that was not given is None; an empty list too)."""
    values = vars(namespace)
    return {name: values[name] for name in specs(cls) if values.get(name) not in (None, [])}


def reference(cls: type) -> str:
    """A Markdown table of `cls`'s settings: YAML key, flag, default, what is accepted, meaning."""
    rows = ["| key | flag | default | accepts | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, spec in specs(cls).items():
        f = {f.name: f for f in dataclasses.fields(cls)}[name]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = "(required)" if required else declared_default(cls, name)
        default = "none" if default is None else '`""`' if default == "" else f"`{default}`" if not required \
            else default
        flag = " ".join(f"`{x}`" if x.startswith("-") else x.upper() for x in spec.flags) or "(YAML only)"
        text = spec.help() if callable(spec.help) else spec.help
        cells = [f"`{name}`", flag, str(default), spec.check.describe(), text]
        rows.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(rows) + "\n"
