"""Pipeline stages: each takes a batch of documents and returns, for each one,
the kept document or a Rejection with its reason. No Kafka in here."""
