"""Topic administration: the one place topics are created, inspected, changed and deleted.

Creation is idempotent (a topic that exists, or that a concurrent creator made first, is
reported as ``exists``). Replication defaults to the cluster's own
``default.replication.factor`` (the broker picks it), so a topic made on a three-broker
cluster that requires ``min.insync.replicas=2`` is not forced down to one copy.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from iolayer.kafka_config import confluent_config
from schemas import Topics

BROKER_DEFAULT = -1  # NewTopic's replication_factor that lets the broker apply its default


@dataclass(frozen=True)
class TopicPlan:
    """A topic to create if it is missing."""
    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)


def admin_client(bootstrap: str, **extra) -> AdminClient:
    return AdminClient(confluent_config(bootstrap, extra))


def ensure_topics(bootstrap: str, plans: Iterable[TopicPlan], *, replication: int | None = None,
                  timeout: float = 30.0) -> dict[str, str]:
    """Create every planned topic that does not exist yet; returns name -> 'created' | 'exists'.
    ``replication`` None: the cluster's ``default.replication.factor``."""
    plans = list(plans)
    admin = admin_client(bootstrap)
    existing = set(admin.list_topics(timeout=timeout).topics)
    result = {p.name: "exists" for p in plans if p.name in existing}
    factor = BROKER_DEFAULT if replication is None else int(replication)
    new = [NewTopic(p.name, num_partitions=p.partitions, replication_factor=factor, config=dict(p.config))
           for p in plans if p.name not in existing]
    if new:
        for name, fut in admin.create_topics(new, request_timeout=timeout).items():
            try:
                fut.result()
                result[name] = "created"
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # else a concurrent creator won
                    raise
                result[name] = "exists"
    return result


def create_topics(bootstrap: str, topics: Topics, *, replication: int | None = None,
                  timeout: float = 30.0) -> dict[str, str]:
    """Create the namespace's topics (``schemas.Topics``) that do not exist yet."""
    plans = [TopicPlan(s.name, s.partitions, dict(s.config)) for s in topics.specs()]
    return ensure_topics(bootstrap, plans, replication=replication, timeout=timeout)


def partition_counts(bootstrap: str, names: Iterable[str], *, timeout: float = 30.0) -> dict[str, int]:
    """Partitions of each named topic, waiting up to ``timeout`` for topics created a moment
    ago to show in the metadata; a topic still missing then counts 0."""
    names = list(names)
    admin = admin_client(bootstrap)
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(timeout=timeout).topics
        counts = {n: len(md[n].partitions) if n in md and md[n].error is None else 0 for n in names}
        if all(counts.values()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def topic_partitions(bootstrap: str, topic: str, timeout: float = 30.0) -> int:
    """Partitions of an existing topic; a clear error when it does not exist."""
    meta = admin_client(bootstrap).list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise RuntimeError(f"topic {topic} does not exist; run `foundry topics create` first")
    return len(meta.partitions)


def topic_exists(bootstrap: str, topic: str, timeout: float = 10.0) -> bool:
    return topic in admin_client(bootstrap).list_topics(timeout=timeout).topics


def set_topic_config(bootstrap: str, topic: str, config: dict[str, str], timeout: float = 30.0) -> None:
    """Change configs of an existing topic (e.g. the raw topic's retention)."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in config.items()])
    admin = admin_client(bootstrap)  # held until the futures resolve: a collected client cancels them
    for fut in admin.incremental_alter_configs([res], request_timeout=timeout).values():
        fut.result()


def topic_config(bootstrap: str, topic: str, timeout: float = 30.0) -> dict[str, str]:
    from confluent_kafka.admin import ConfigResource

    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    admin = admin_client(bootstrap)
    found = admin.describe_configs([res], request_timeout=timeout)[res].result()
    return {k: v.value for k, v in found.items()}


def delete_topics(bootstrap: str, names: list[str], timeout: float = 30.0) -> None:
    admin = admin_client(bootstrap)
    existing = set(admin.list_topics(timeout=timeout).topics)
    todo = [n for n in names if n in existing]
    if todo:
        for fut in admin.delete_topics(todo, request_timeout=timeout).values():
            fut.result()
