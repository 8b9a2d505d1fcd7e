"""One declaration per setting (lts.core.settings): flags, -h, YAML keys and errors all come from it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lts.core.cli import ArgumentParser, build_settings, effective_defaults
from lts.core.errors import LTSError
from lts.core.settings import (
    Boolean,
    Choice,
    Integer,
    Number,
    Optional,
    Settings,
    Text,
    Texts,
    borrow,
    must_match,
    resumable,
    setting,
    specs,
)

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Toy(Settings):
    path: str = setting(help="a positional path", check=Text(nonempty=True), flag="path")
    steps: int = setting(10, "how many steps", Integer(ge=1))
    rate: float = setting(0.5, "a rate", Number(gt=0, le=1))
    mode: str = setting("a", "the mode", Choice(("a", "b")))
    threads: int | None = setting(None, "threads (none: all)", Optional(Integer(ge=1)))
    fancy: bool = setting(False, "be fancy", Boolean())
    plots: bool = setting(True, "no plots", Boolean(), flag="--no-plots")
    tags: tuple[str, ...] = setting((), "a tag (repeatable)", Texts(), flag="--tag", append=True)
    secret: int = setting(3, "YAML only", Integer(ge=0), flag=False)

    def check(self) -> None:
        if self.fancy and self.mode == "b":
            raise LTSError("fancy needs mode a")


@dataclass(frozen=True)
class Borrower(Settings):
    steps: int = borrow(Toy, "steps")
    rate: float | None = borrow(Toy, "rate", default=None, optional=True, help="a rate (none: the toy's)")


def parse(*argv: str) -> Toy:
    parser = ArgumentParser(prog="toy", settings=Toy, preset="no-such-preset")
    return parser.settings_from(parser.parse_args(list(argv)))


def test_flags_come_from_the_declarations():
    t = parse("here", "--steps", "4", "--rate", "0.25", "--mode", "b", "--threads", "2", "--no-plots",
              "--tag", "x", "--tag", "y")
    assert t == Toy(path="here", steps=4, rate=0.25, mode="b", threads=2, plots=False, tags=("x", "y"))
    assert parse("here") == Toy(path="here")  # a flag not given leaves the declared default
    assert parse("here", "--fancy").fancy is True


def test_help_lists_every_flag_and_every_default():
    text = ArgumentParser(prog="toy", settings=Toy, preset="no-such-preset").format_help()
    for flag, helptext in (("--steps N", "how many steps"), ("--rate X", "a rate"), ("--mode {a,b}", "the mode"),
                           ("--no-plots", "no plots"), ("--tag", "a tag"), ("--config FILE", "YAML preset")):
        assert flag in text and helptext in text
    assert "--secret" not in text  # flag=False: a YAML key only
    tail = text.split("settings when no flag is given (the declared defaults):")[1]
    assert [line.split()[0] for line in tail.strip().splitlines()] == [n for n in specs(Toy) if n != "path"]


@pytest.mark.parametrize("values, message", [
    ({"steps": 0}, "steps (--steps) must be an integer >= 1, got 0"),
    ({"steps": True}, "steps (--steps) must be an integer >= 1, got True"),
    ({"steps": 2.0}, "steps (--steps) must be an integer >= 1, got 2.0"),
    ({"rate": 0}, "rate (--rate) must be a number in (0, 1], got 0"),
    ({"rate": float("nan")}, "rate (--rate) must be a number in (0, 1], got nan"),
    ({"rate": "fast"}, "rate (--rate) must be a number in (0, 1], got 'fast'"),
    ({"mode": "c"}, "mode (--mode) must be one of a, b, got 'c'"),
    ({"threads": 0}, "threads (--threads) must be an integer >= 1, got 0"),
    ({"fancy": "yes"}, "fancy (--fancy) must be true or false, got 'yes'"),
    ({"tags": [1]}, "tags (--tag) must be a list of strings, got [1]"),
    ({"secret": -1}, "secret must be an integer >= 0, got -1"),
    ({"path": " "}, "path is empty"),
    ({"fancy": True, "mode": "b"}, "fancy needs mode a"),
])
def test_every_check_is_one_line_naming_the_key_and_the_flag(values, message):
    with pytest.raises(LTSError) as info:
        Toy(**{"path": "p", **values})
    assert str(info.value) == message


def test_checks_normalise_and_yaml_keys_are_the_names():
    t = build_settings(Toy, {"path": "p", "tags": "one", "threads": None, "rate": 1}, {"steps": 7})
    assert t.tags == ("one",) and t.threads is None and t.rate == 1 and t.steps == 7
    with pytest.raises(LTSError, match=r"unknown setting\(s\) in config: step \(known: "):
        build_settings(Toy, {"path": "p", "step": 3}, {})


def test_borrow_keeps_the_declaration_and_changes_only_what_it_says():
    assert Borrower() == Borrower(steps=10, rate=None)
    assert specs(Borrower)["steps"] == specs(Toy)["steps"]
    assert specs(Borrower)["rate"].help == "a rate (none: the toy's)"
    with pytest.raises(LTSError, match=r"steps \(--steps\) must be an integer >= 1"):
        Borrower(steps=0)
    with pytest.raises(LTSError, match=r"rate \(--rate\) must be a number in \(0, 1\]"):
        Borrower(rate=2.0)


def commands() -> dict[str, type]:
    from lts.compare.settings import BenchSettings
    from lts.cost.cli import EvaluateSettings
    from lts.generate.decode import GenerateSettings
    from lts.search.job import SearchJob
    from lts.train.settings import TrainSettings

    return {"search": SearchJob, "train": TrainSettings, "generate": GenerateSettings, "benchmark": BenchSettings,
            "evaluate": EvaluateSettings}


@pytest.mark.parametrize("preset", ["search", "train", "generate", "benchmark", "evaluate"])
def test_every_setting_of_every_command_is_declared_with_help_and_a_check(preset):
    cls = commands()[preset]
    declared = specs(cls)
    assert set(declared) == {f.name for f in dataclasses.fields(cls)}, "a setting without a declaration"
    text = ArgumentParser(prog=preset, settings=cls, preset=preset).format_help()
    for name, spec in declared.items():
        help_text = spec.help() if callable(spec.help) else spec.help
        assert help_text and type(spec.check).__name__ != "Check", f"{preset}.{name} lacks help or a check"
        if spec.flags:
            assert spec.flags[-1] in text or (not spec.flags[0].startswith("-")), f"{preset}: -h lacks {name}"


PRESETS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=[p.name for p in PRESETS])
def test_presets_hold_only_what_differs_from_the_declared_defaults(path):
    """configs/<command>[-variant].yaml: known keys only, and none that repeats a declared default."""
    command = path.stem.split("-")[0]
    cls = commands()[command]
    preset = yaml.safe_load(path.read_text()) or {}
    defaults = effective_defaults(cls, {})

    def plain(value):
        return tuple(value) if isinstance(value, list) else value

    for key, value in preset.items():
        assert key in defaults, f"{path.name}: unknown key {key}"
        assert plain(value) != plain(defaults[key]), f"{path.name}: {key} repeats the declared default {value!r}"
    if command == "search":  # the others need their positional arguments to build
        build_settings(cls, preset, {}, source=path.name)


def test_what_a_resume_must_match_is_declared_on_the_setting():
    @dataclass(frozen=True)
    class Job(Settings):
        seed: int = setting(0, "seed", Integer())
        sizes: tuple = setting((1, 2), "sizes", Texts())
        workers: int = setting(1, "workers", Integer(), resumable=True)

    assert resumable(Job) == {"workers"}
    assert must_match(Job(seed=3, sizes=("a",), workers=4)) == {"seed": 3, "sizes": ["a"]}
    # borrowed into another command, a setting keeps its declaration unless told otherwise
    @dataclass(frozen=True)
    class Other(Settings):
        workers: int = borrow(Job, "workers")
        seed: int = borrow(Job, "seed", resumable=True)

    assert resumable(Other) == {"workers", "seed"}
