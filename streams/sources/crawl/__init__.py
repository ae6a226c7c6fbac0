"""The crawler: ``engine.Crawler`` over a ``frontier.KafkaFrontier`` (or ``MemoryFrontier``)."""
