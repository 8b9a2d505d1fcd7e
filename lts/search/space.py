"""A job's search space: its model family's (``lts.families``), read from the YAML ``space:`` mapping.

``family:`` names the family (default ``gpt2``); the other keys are that family's space fields (GPT-2's:
``lts/families/gpt2/space.py``). The search only uses what :class:`Space` declares: pymoo named variables,
decoding a candidate (a dict of gene values, as pymoo's mixed-variable NSGA-II hands it out) into an
architecture, and the space's size.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Protocol, Sequence

import numpy as np

from lts.families import DEFAULT_FAMILY, Arch, Family, family


class Space(Protocol):
    """What a family's search space offers the search."""

    family: Family
    max_positions: int  # the longest sequence any of its architectures takes

    @property
    def genes(self) -> tuple[str, ...]:
        """Gene names, in a fixed order (a sequence of values is read in it)."""

    @property
    def size(self) -> int:
        """How many gene combinations decode to distinct architectures (an upper bound)."""

    def variables(self) -> dict[str, Any]:
        """pymoo's named variables of the problem, by gene name."""

    def repair(self, x: Mapping[str, Any] | Sequence[float]) -> dict[str, int]:
        """Genes made valid (rounded, clipped, consistent); never raises."""

    def decode(self, x: Mapping[str, Any] | Sequence[float]) -> Arch:
        """The architecture of (repaired) genes."""

    def encode(self, arch: Arch) -> dict[str, int]:
        """Genes that decode to `arch`; LTSError when it is outside the space."""

    def sample(self, rng: np.random.Generator) -> Arch:
        """A uniformly drawn architecture."""

    def configs(self) -> Iterator[Arch]:
        """Every architecture, when the space is small enough to list (else ValueError)."""

    def to_dict(self) -> dict[str, Any]:
        """The space as its YAML reads (without ``family``)."""


def space_from_dict(data: Mapping[str, Any] | None) -> Space:
    """The space a job's ``space:`` mapping declares (``family:`` picks the family; default gpt2)."""
    data = dict(data or {})
    return family(str(data.pop("family", DEFAULT_FAMILY))).space(data)


def space_to_dict(space: Space) -> dict[str, Any]:
    """The mapping :func:`space_from_dict` reads back (``family:`` only when it is not the default)."""
    out = space.to_dict()
    return out if space.family.name == DEFAULT_FAMILY else {"family": space.family.name, **out}


__all__ = ["Space", "space_from_dict", "space_to_dict"]
