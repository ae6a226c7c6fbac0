"""One recipe version per namespace, against the real broker."""
from __future__ import annotations

import subprocess
import sys

import pytest
from confluent_kafka import Producer

from iolayer.topics_admin import create_topics
from schemas import CuratedDocument, Topics
from streams.namespace_guard import NamespaceHoldsAnotherRecipe, recipe_versions_in, refuse_another_recipe
from tests.foundry.pipeline_helpers import small_recipe

pytestmark = pytest.mark.kafka


def test_a_worker_of_another_recipe_version_refuses_the_namespace(kafka_bootstrap, tmp_path, unique_name):
    topics = Topics(namespace=unique_name, partitions=2, raw_name=f"{unique_name}.raw")
    create_topics(kafka_bootstrap, topics)
    refuse_another_recipe(kafka_bootstrap, topics, "v-new")  # an empty namespace takes any version
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    doc = CuratedDocument(id="d", text="t", source="s", content_hash="0" * 32, recipe_version="v-old")
    p.produce(topics.keyed, value=doc.encode(), partition=1)
    p.produce(topics.keyed, value=b"\xff undecodable", partition=1)  # the newest, but names no version
    assert p.flush(30) == 0
    assert recipe_versions_in(kafka_bootstrap, topics.keyed) == {1: "v-old"}
    refuse_another_recipe(kafka_bootstrap, topics, "v-old")  # its own version may restart
    with pytest.raises(NamespaceHoldsAnotherRecipe, match="v-old"):
        refuse_another_recipe(kafka_bootstrap, topics, "v-new")
    # The worker command ends with the message and status 1, not a traceback.
    recipe = tmp_path / "recipe.yaml"
    small_recipe().save(recipe)
    res = subprocess.run([sys.executable, "-m", "foundry.cli", "worker", "--bootstrap", kafka_bootstrap,
                          "--namespace", unique_name, "--recipe", str(recipe), "--raw-topic", topics.raw],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "must run in a namespace of its own" in res.stderr
    assert "Traceback" not in res.stderr
