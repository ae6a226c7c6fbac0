"""Client settings from the environment: plaintext by default, SASL/SSL when asked for,
and a clear error for settings that cannot work together."""
from __future__ import annotations

import pytest

from iolayer.kafka_config import CLIENT_LOG, KafkaSecurity, KafkaSettingsError, aiokafka_config, confluent_config, faust_credentials


def test_plaintext_by_default_and_caller_keys_win():
    sec = KafkaSecurity.from_env({})
    conf = confluent_config("b:9092", {"group.id": "g", "bootstrap.servers": "other:1"}, security=sec)
    assert conf.pop("logger") is CLIENT_LOG  # librdkafka's lines go through logging, not to stderr
    assert conf == {"bootstrap.servers": "other:1", "group.id": "g"}
    assert aiokafka_config(security=sec) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(security=sec) is None


def test_sasl_ssl_reaches_every_client(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not parsed here")
    env = {"FOUNDRY_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "FOUNDRY_KAFKA_SASL_MECHANISM": "scram-sha-512",
           "FOUNDRY_KAFKA_SASL_USERNAME": "svc", "FOUNDRY_KAFKA_SASL_PASSWORD": "pw",
           "FOUNDRY_KAFKA_SSL_CAFILE": str(ca)}
    sec = KafkaSecurity.from_env(env)
    conf = confluent_config("b:9093", security=sec)
    conf.pop("logger")
    assert conf == {"bootstrap.servers": "b:9093", "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                    "sasl.username": "svc", "sasl.password": "pw", "ssl.ca.location": str(ca)}


def test_sasl_plaintext_for_aiokafka_and_faust():
    env = {"FOUNDRY_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "FOUNDRY_KAFKA_SASL_USERNAME": "u",
           "FOUNDRY_KAFKA_SASL_PASSWORD": "p"}
    sec = KafkaSecurity.from_env(env)
    assert sec.sasl_mechanism == "PLAIN"  # the default mechanism
    assert aiokafka_config(security=sec) == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                                             "sasl_plain_username": "u", "sasl_plain_password": "p"}
    creds = faust_credentials(security=sec)
    assert creds.username == "u" and creds.password == "p" and creds.protocol.value == "SASL_PLAINTEXT"


def test_the_process_environment_is_read(monkeypatch):
    monkeypatch.setenv("FOUNDRY_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("FOUNDRY_KAFKA_SASL_USERNAME", "u")
    monkeypatch.setenv("FOUNDRY_KAFKA_SASL_PASSWORD", "p")
    assert confluent_config("b:1")["sasl.username"] == "u"


@pytest.mark.parametrize("env,match", [
    ({"FOUNDRY_KAFKA_SECURITY_PROTOCOL": "TLS"}, "expected one of"),
    ({"FOUNDRY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "FOUNDRY_KAFKA_SASL_USERNAME": "u"}, "SASL_PASSWORD"),
    ({"FOUNDRY_KAFKA_SASL_USERNAME": "u", "FOUNDRY_KAFKA_SASL_PASSWORD": "p"}, "SASL settings given"),
    ({"FOUNDRY_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "FOUNDRY_KAFKA_SASL_MECHANISM": "GSSAPI",
      "FOUNDRY_KAFKA_SASL_USERNAME": "u", "FOUNDRY_KAFKA_SASL_PASSWORD": "p"}, "MECHANISM"),
    ({"FOUNDRY_KAFKA_SSL_CAFILE": "/nonexistent.pem"}, "SSL files given"),
    ({"FOUNDRY_KAFKA_SECURITY_PROTOCOL": "SSL", "FOUNDRY_KAFKA_SSL_CAFILE": "/nonexistent.pem"}, "no such file"),
])
def test_contradictory_settings_are_clear_errors(env, match):
    with pytest.raises(KafkaSettingsError, match=match):
        KafkaSecurity.from_env(env)
