"""The continuous trainer (``foundry train``): tails the shards topic, trains a small
decoder-only transformer on the token stream, publishes value scores, exports ONNX.

Modules: ``cli`` (the command), ``loop`` (feed routing, runs, stopping),
``run_session`` (one run: model, optimizer, step, checkpoints), ``shard_feed``
(Kafka/file/list announcements), ``shard_stream`` (the deterministic row
sequence), ``shard_reader`` (webdataset decoding on workers), ``batching``,
``model``, ``schedule`` (warmup/decay and spike responses), ``value`` and
``value_publisher``, ``evaluation``, ``checkpoint``, ``export``, ``config``,
``synthetic_shards`` (test and benchmark data).
"""
