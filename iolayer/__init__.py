"""Kafka and file IO shared by every process: client settings, topics, ranges, atomic writes."""
