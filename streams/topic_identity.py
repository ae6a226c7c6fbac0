"""The broker's id of a topic: tells a topic from one deleted and created again under its name."""
from __future__ import annotations

import time

from confluent_kafka import KafkaException, TopicCollection

from iolayer.topics_admin import admin_client


def topic_incarnation(bootstrap: str, topic: str, wait_s: float = 30.0) -> str | None:
    """The topic id as the broker prints it; None from a broker that has no topic ids (then
    raw refs name the topic only, and a recreated topic cannot be told from the old one).
    Raises RuntimeError if the broker does not answer within ``wait_s``: a worker that went
    on without the id would write refs that its own earlier refs do not match."""
    admin = admin_client(bootstrap)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            desc = admin.describe_topics(TopicCollection([topic]), request_timeout=10)[topic].result()
            break
        except KafkaException as exc:
            if time.monotonic() >= deadline:
                raise RuntimeError(f"cannot read the id of topic {topic} at {bootstrap}: {exc.args[0]}") from None
            time.sleep(1.0)
    tid = getattr(desc, "topic_id", None)
    return str(tid) if tid is not None else None
