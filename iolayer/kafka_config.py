"""Kafka client settings, in one place, for every client the project makes.

Every producer, consumer and admin client (confluent-kafka) and every Faust app or
aiokafka client takes its connection settings from here, so a secured cluster needs
its settings given once, in the environment:

    FOUNDRY_KAFKA_SECURITY_PROTOCOL   PLAINTEXT (default) | SSL | SASL_PLAINTEXT | SASL_SSL
    FOUNDRY_KAFKA_SASL_MECHANISM      PLAIN (default with SASL) | SCRAM-SHA-256 | SCRAM-SHA-512
    FOUNDRY_KAFKA_SASL_USERNAME / FOUNDRY_KAFKA_SASL_PASSWORD
    FOUNDRY_KAFKA_SSL_CAFILE          CA bundle that signed the brokers' certificates
    FOUNDRY_KAFKA_SSL_CERTFILE / FOUNDRY_KAFKA_SSL_KEYFILE   client certificate (mutual TLS)
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaSettingsError(ValueError):
    """The environment's Kafka security settings are incomplete or contradictory."""


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_ssl(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSecurity:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(f"FOUNDRY_KAFKA_{name}", "").strip()
            return value or None

        protocol = (get("SECURITY_PROTOCOL") or "PLAINTEXT").upper()
        if protocol not in PROTOCOLS:
            raise KafkaSettingsError(f"FOUNDRY_KAFKA_SECURITY_PROTOCOL={protocol!r}: expected one of {PROTOCOLS}")
        sec = cls(protocol=protocol, sasl_mechanism=(get("SASL_MECHANISM") or "").upper() or None,
                  sasl_username=get("SASL_USERNAME"), sasl_password=get("SASL_PASSWORD"),
                  ssl_cafile=get("SSL_CAFILE"), ssl_certfile=get("SSL_CERTFILE"), ssl_keyfile=get("SSL_KEYFILE"))
        if sec.uses_sasl:
            mech = sec.sasl_mechanism or "PLAIN"
            if mech not in MECHANISMS:
                raise KafkaSettingsError(f"FOUNDRY_KAFKA_SASL_MECHANISM={mech!r}: expected one of {MECHANISMS}")
            if not (sec.sasl_username and sec.sasl_password):
                raise KafkaSettingsError(f"security protocol {protocol} needs FOUNDRY_KAFKA_SASL_USERNAME "
                                         "and FOUNDRY_KAFKA_SASL_PASSWORD")
            sec = cls(**{**sec.__dict__, "sasl_mechanism": mech})
        elif sec.sasl_username or sec.sasl_mechanism:
            raise KafkaSettingsError(f"SASL settings given but FOUNDRY_KAFKA_SECURITY_PROTOCOL is {protocol}; "
                                     "use SASL_PLAINTEXT or SASL_SSL")
        if (sec.ssl_cafile or sec.ssl_certfile) and not sec.uses_ssl:
            raise KafkaSettingsError(f"SSL files given but FOUNDRY_KAFKA_SECURITY_PROTOCOL is {protocol}; "
                                     "use SSL or SASL_SSL")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(sec, name)
            if path and not os.path.isfile(path):
                raise KafkaSettingsError(f"FOUNDRY_KAFKA_{name.upper()}={path}: no such file")
        return sec


# librdkafka's own lines (a broker still loading its coordinator at start-up, a refused connection, a
# purged queue at close) go through logging under this name instead of straight to stderr: they show
# where the process configures logging (the services), not on a command's console.
CLIENT_LOG = logging.getLogger("librdkafka")
CLIENT_LOG.addHandler(logging.NullHandler())


def confluent_config(bootstrap: str, extra: Mapping[str, Any] | None = None, *,
                     security: KafkaSecurity | None = None) -> dict[str, Any]:
    """A confluent-kafka (librdkafka) configuration: the bootstrap servers, the security
    settings from the environment, then the caller's own keys (``extra``)."""
    sec = security or KafkaSecurity.from_env()
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": CLIENT_LOG}
    if sec.protocol != "PLAINTEXT":
        conf["security.protocol"] = sec.protocol
    if sec.uses_sasl:
        conf.update({"sasl.mechanism": sec.sasl_mechanism, "sasl.username": sec.sasl_username,
                     "sasl.password": sec.sasl_password})
    if sec.uses_ssl:
        for key, value in (("ssl.ca.location", sec.ssl_cafile), ("ssl.certificate.location", sec.ssl_certfile),
                           ("ssl.key.location", sec.ssl_keyfile)):
            if value:
                conf[key] = value
    conf.update(extra or {})
    return conf


def _ssl_context(sec: KafkaSecurity):
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(cafile=sec.ssl_cafile, certfile=sec.ssl_certfile, keyfile=sec.ssl_keyfile)


def aiokafka_config(*, security: KafkaSecurity | None = None) -> dict[str, Any]:
    """Keyword arguments for an aiokafka client (AIOKafkaProducer / AIOKafkaConsumer)."""
    sec = security or KafkaSecurity.from_env()
    kw: dict[str, Any] = {"security_protocol": sec.protocol}
    if sec.uses_sasl:
        kw.update(sasl_mechanism=sec.sasl_mechanism, sasl_plain_username=sec.sasl_username,
                  sasl_plain_password=sec.sasl_password)
    if sec.uses_ssl:
        kw["ssl_context"] = _ssl_context(sec)
    return kw


def faust_credentials(*, security: KafkaSecurity | None = None):
    """``broker_credentials`` for a Faust app (None on a plaintext cluster)."""
    sec = security or KafkaSecurity.from_env()
    if sec.protocol == "PLAINTEXT":
        return None
    import faust

    ctx = _ssl_context(sec) if sec.uses_ssl else None
    if sec.uses_sasl:
        return faust.SASLCredentials(username=sec.sasl_username, password=sec.sasl_password,
                                     mechanism=sec.sasl_mechanism, ssl_context=ctx)
    return faust.SSLCredentials(ctx)
