"""The default operator set: what runs when a user names no operators."""
from __future__ import annotations

from streams.stages.base import Stage
from streams.stages.registry import build_stage, default_operator_names, operator_names, with_context


def test_default_set_is_every_operator_without_worker_context():
    defaults = default_operator_names()
    assert {"density", "toxicity", "language", "quality_rules", "near_dedup"} <= set(defaults)
    for name in set(operator_names()) - set(defaults):
        # left out only because it takes what a running worker knows
        assert with_context({"op": name}, {"bootstrap": "b:1", "namespace": "n"}) != {"op": name}, name


def test_every_default_operator_builds_from_the_installed_package():
    # Builds each with its default parameters, so a model file missing from the package fails here.
    for name in default_operator_names():
        assert isinstance(build_stage({"op": name}), Stage), name
