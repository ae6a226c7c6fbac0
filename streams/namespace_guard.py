"""One recipe version per namespace: a worker of another version refuses to start.

Every version's worker in a namespace shares its topics: a second version would read the
first one's documents from the keyed topic (and shard them into its own output), and its
dedup agent's raw-offset marks would take one version's copies for redeliveries of the
other's. A changed recipe therefore runs in a namespace of its own (``--namespace``, or
``foundry replay``, which names one per version); the raw topic is shared, so nothing is
lost. The sinks check the same thing per document (a document of another version stops them).
"""
from __future__ import annotations

import json
import time

from confluent_kafka import KafkaException

from iolayer.ranges import range_consumer, read_range, watermarks
from schemas import Topics

TAIL = 50  # newest messages looked at per partition


class NamespaceHoldsAnotherRecipe(SystemExit):
    """A SystemExit, so ``foundry worker`` ends with the message, not a traceback."""


def recipe_versions_in(bootstrap: str, topic: str) -> dict[int, str]:
    """The recipe version of the newest readable document of each partition of ``topic`` (keyed)."""
    found: dict[int, str] = {}
    consumer = range_consumer(bootstrap)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                marks = watermarks(bootstrap, topic, consumer=consumer)
                break
            except KafkaException:  # a topic created a moment ago has no leader yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        for p, (low, high) in marks.items():
            for m in read_range(consumer, topic, p, max(low, high - TAIL), high):
                try:
                    version = json.loads(m.value() or b"null").get("recipe_version")
                except (ValueError, AttributeError):
                    continue  # undecodable: the agents ledger it, it names no version
                if isinstance(version, str):
                    found[p] = version
    finally:
        consumer.close()
    return found


def refuse_another_recipe(bootstrap: str, topics: Topics, recipe_version: str) -> None:
    """Raise NamespaceHoldsAnotherRecipe if the namespace's topics already hold documents
    of a recipe version other than ``recipe_version``."""
    # Where the agents' documents of the namespace are: the sequenced topic (every validated
    # document) where the build has one, and the keyed topic.
    for topic in (getattr(topics, "sequenced", None), topics.keyed):
        if topic is None:
            continue
        try:
            found = recipe_versions_in(bootstrap, topic)
        except RuntimeError:  # not created yet: nothing in it
            continue
        others = {p: v for p, v in found.items() if v != recipe_version}
        if others:
            p, v = sorted(others.items())[0]
            raise NamespaceHoldsAnotherRecipe(_refusal(topics.namespace, v, f"{topic}[{p}]", recipe_version))


def _refusal(namespace: str, found: str, where: str, version: str) -> str:
    return (f"namespace {namespace!r} already holds documents of recipe version {found} ({where}); "
            f"recipe version {version} must run in a namespace of its own (--namespace NEW, or "
            f"foundry replay): sharing the topics would mix the two versions' outputs")
