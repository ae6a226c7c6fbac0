"""A worker refuses to start while the pre-merge ``unique`` topic (dedup -> curate in
earlier builds) still holds documents its group never curated: they would be lost."""
from __future__ import annotations

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.recipe import load_recipe
from schemas import Topics
from streams.worker import legacy_backlog, run_worker

pytestmark = pytest.mark.kafka


def test_worker_refuses_to_strand_a_legacy_backlog(kafka_bootstrap, unique_name, tmp_path):
    recipe = load_recipe(None)
    topics = Topics(namespace=unique_name, partitions=recipe.partitions)
    group = topics.worker_group(recipe.version)
    assert legacy_backlog(kafka_bootstrap, topics, group) == 0  # no such topic: nothing to strand

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topics.legacy_unique, 2, 1)])[topics.legacy_unique].result()
    assert legacy_backlog(kafka_bootstrap, topics, group) == 0  # the topic alone is fine
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(3):
        p.produce(topics.legacy_unique, key=b"k%d" % i, value=b"{}", partition=i % 2)
    p.flush(30)
    assert legacy_backlog(kafka_bootstrap, topics, group) == 3
    with pytest.raises(SystemExit, match="still holds 3 documents"):
        run_worker(None, kafka_bootstrap, unique_name, datadir=str(tmp_path / "faust"))
