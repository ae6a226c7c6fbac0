"""Prometheus and Grafana in the compose deployment: the files parse, every long-running
foundry service has a scrape target, and every metric the dashboard queries is one the code exports."""
from __future__ import annotations

import json
import re

import yaml
from prometheus_client import REGISTRY

import telemetry.metrics  # noqa: F401 - registers every foundry_ metric
from tests.compose.compose_checks import foundry_services, load_compose
from tests.compose.image_layout import REPO

COMPOSE = REPO / "compose"
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "info": ("_info",), "summary": ("_sum", "_count", "_created")}


def exported_names() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("foundry_"):
            names |= {family.name + s for s in SUFFIXES[family.type]}
    return names


def queried_names(dashboard: dict) -> set[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return {m for e in exprs for m in re.findall(r"\bfoundry_[a-z_]+", e)}


def scrape_targets(prom: dict) -> set[str]:
    hosts = set()
    for job in prom["scrape_configs"]:
        for sc in job.get("static_configs", []):
            hosts |= {t.rsplit(":", 1)[0] for t in sc["targets"]}
        for sd in job.get("dns_sd_configs", []):
            hosts |= set(sd["names"])
    return hosts


def test_compose_runs_prometheus_and_grafana_with_their_files():
    doc = load_compose(COMPOSE / "docker-compose.yml")
    prom, graf = doc["services"]["prometheus"], doc["services"]["grafana"]
    for svc in (prom, graf):
        for vol in svc["volumes"]:
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (COMPOSE / src).exists(), f"{src} is mounted but missing"
    assert "prometheus" in {d if isinstance(d, str) else d for d in graf["depends_on"]}


def test_every_long_running_foundry_service_is_scraped_on_its_metrics_port():
    doc = load_compose(COMPOSE / "docker-compose.yml")
    prom = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    long_running = {n for n, s in foundry_services(doc).items() if s.get("restart", "unless-stopped") != "no"}
    assert long_running, "no foundry services found"
    assert long_running <= scrape_targets(prom), long_running - scrape_targets(prom)
    ports = {t.rsplit(":", 1)[1] for job in prom["scrape_configs"] for sc in job.get("static_configs", [])
             for t in sc["targets"]} | {str(sd["port"]) for job in prom["scrape_configs"]
                                        for sd in job.get("dns_sd_configs", [])}
    env = doc["x-foundry-env"]
    assert ports == {str(env["FOUNDRY_METRICS_PORT"])} and env["FOUNDRY_METRICS_ADDR"] == "0.0.0.0"


def test_the_dashboard_queries_only_metrics_the_code_exports():
    dashboard = json.loads((COMPOSE / "grafana" / "dashboards" / "foundry.json").read_text())
    queried = queried_names(dashboard)
    assert len(queried) >= 10
    assert queried <= exported_names(), queried - exported_names()
    # The panels the page shows are all there.
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for what in ("throughput", "rejections", "keep rate", "budget", "loss", "value scores", "lag"):
        assert what in titles, what
    ds = yaml.safe_load((COMPOSE / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uids = {d["uid"] for d in ds["datasources"]}
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} <= uids
    provider = yaml.safe_load((COMPOSE / "grafana" / "provisioning" / "dashboards" / "foundry.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_a_query_of_an_unknown_metric_is_caught():
    bad = {"panels": [{"targets": [{"expr": "rate(foundry_docs_eaten_total[1m])"}]}]}
    assert queried_names(bad) - exported_names() == {"foundry_docs_eaten_total"}
