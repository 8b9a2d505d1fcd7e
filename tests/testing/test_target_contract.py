"""Every Target in conftest.TARGETS keeps the Target contract (lts.testing.target)."""

import dataclasses

import pytest

from lts.testing.target import TargetContract, protocol_variants


class TestTargets(TargetContract):
    @pytest.fixture
    def target_variants(self, target):
        """The Protocol's settings and CPUTarget's own: each changes what a measurement gives."""
        graph_optimization = "extended" if target.graph_optimization != "extended" else "all"
        memory_probe = "sampled" if target.memory_probe == "auto" else "auto"
        return {**protocol_variants(target),
                "graph_optimization": dataclasses.replace(target, graph_optimization=graph_optimization),
                "memory_probe": dataclasses.replace(target, memory_probe=memory_probe)}
