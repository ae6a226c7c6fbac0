"""Creates the topics of a namespace, idempotently."""
from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from schemas import Topics


def create_topics(bootstrap: str, topics: Topics, *, replication: int = 1, timeout: float = 30.0) -> dict[str, str]:
    """Create every topic of ``topics`` that does not exist yet; returns name -> 'created' | 'exists'."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=timeout).topics)
    result = {}
    new = []
    for spec in topics.specs():
        if spec.name in existing:
            result[spec.name] = "exists"
        else:
            new.append(NewTopic(spec.name, num_partitions=spec.partitions, replication_factor=replication,
                                config=dict(spec.config)))
    if new:
        for name, fut in admin.create_topics(new, request_timeout=timeout).items():
            try:
                fut.result()
                result[name] = "created"
            except KafkaException as exc:
                if exc.args[0].code() == exc.args[0].TOPIC_ALREADY_EXISTS:  # a concurrent creator won
                    result[name] = "exists"
                else:
                    raise
    return result


def set_topic_config(bootstrap: str, topic: str, config: dict[str, str], timeout: float = 30.0) -> None:
    """Change configs of an existing topic (e.g. the raw topic's retention)."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in config.items()])
    for fut in admin.incremental_alter_configs([res], request_timeout=timeout).values():
        fut.result()


def topic_config(bootstrap: str, topic: str, timeout: float = 30.0) -> dict[str, str]:
    from confluent_kafka.admin import ConfigResource

    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return {k: v.value for k, v in admin.describe_configs([res], request_timeout=timeout)[res].result().items()}


def delete_topics(bootstrap: str, names: list[str], timeout: float = 30.0) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=timeout).topics)
    todo = [n for n in names if n in existing]
    if todo:
        for fut in admin.delete_topics(todo, request_timeout=timeout).values():
            fut.result()
