"""compose/docker-compose.yml can start as written: read against the image compose/Dockerfile
builds (a real wheel of what its COPY lines bring in), the CLI and the brokers' settings.

Each check is also run on a copy of the file with one known defect put back (the defects the
file used to have), to show the check catches it.
"""
from __future__ import annotations

import copy

import pytest

from tests.compose.compose_checks import (check_commands, check_paths, check_recipes, check_replication,
                                          check_topics, check_worker_scale, foundry_services, kafka_services,
                                          load_compose)
from tests.compose.image_layout import REPO, build_image

COMPOSE_DIR = REPO / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yml"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    img = build_image(COMPOSE_DIR / "Dockerfile", REPO, tmp_path_factory.mktemp("image"))
    assert not img.problems, img.problems
    return img


@pytest.fixture
def doc():
    return load_compose(COMPOSE)


def test_services_of_the_factory_are_there(doc):
    assert len(kafka_services(doc)) == 3
    commands = {" ".join(s["command"][1:3]) for s in foundry_services(doc).values()}
    for needed in ("topics create", "worker --compression", "shard-writer --out", "ledger --out", "budget",
                   "ingest files", "train --run-dir"):
        assert any(c.startswith(needed) for c in commands), needed


def test_image_installs_the_package_not_the_source_tree(image):
    # the sources are gone after the install: everything resolves in site-packages
    assert image.package_root.endswith("site-packages")
    assert not any(f.startswith("/src/") for f in image.files)
    for shipped in ("models/tokenizer/foundry-sp32k-v1.model", "models/density/density.json",
                    "models/toxicity/toxicity.json", "schemas/recipes/default.yaml", "foundry/kafka_assets/pom.xml"):
        assert f"{image.package_root}/{shipped}" in image.files, shipped
    assert image.user == "foundry" and image.writable_dir(image.workdir)


def test_the_build_context_holds_what_the_dockerfile_copies(tmp_path):
    # the image fixture built with no problems; here a .dockerignore that leaves a package out
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text((COMPOSE_DIR / "Dockerfile").read_text())
    ignore = (COMPOSE_DIR / "Dockerfile.dockerignore").read_text()
    (tmp_path / "Dockerfile.dockerignore").write_text(ignore.replace("!iolayer\n", ""))
    assert "COPY iolayer: not in the build context" in build_image(dockerfile, REPO, tmp_path / "img").problems


def test_every_command_is_a_real_foundry_command(doc, image, tmp_path):
    assert check_commands(doc, image, COMPOSE_DIR, tmp_path) == []
    broken = copy.deepcopy(doc)
    broken["services"]["budget"]["command"] = ["foundry", "budget-agent"]
    broken["services"]["ingest"]["command"] += ["--no-such-option"]
    problems = check_commands(broken, image, COMPOSE_DIR, tmp_path / "broken")
    assert any("budget-agent" in p and "not a foundry command" in p for p in problems)
    assert any("ingest" in p and "--no-such-option" in p for p in problems)


def test_paths_resolve_inside_the_image(doc, image):
    assert check_paths(doc, image, COMPOSE_DIR) == []
    broken = copy.deepcopy(doc)
    broken["services"]["shard-writer"]["command"][-1] = "/srv/shards"  # not a volume, root's folder
    broken["services"]["trainer"]["volumes"] = ["shards:/shards:ro", "trainer:/data:ro"]
    broken["services"]["ingest"]["command"][3] = "/incoming"
    problems = check_paths(broken, image, COMPOSE_DIR)
    assert any("shard-writer" in p and "/srv/shards" in p for p in problems)
    assert any("trainer" in p and "read-only" in p for p in problems)
    assert any("ingest" in p and "/incoming does not exist" in p for p in problems)


def test_recipes_and_their_tokenizer_resolve_inside_the_image(doc, image, tmp_path):
    assert check_recipes(doc, image, COMPOSE_DIR) == []
    # The old layout: the recipes folder mounted at /recipes, the tokenizer a path relative to the
    # file; ../../models from /recipes is /models, which the image does not have.
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    text = (REPO / "schemas" / "recipes" / "default.yaml").read_text()
    head, _, rest = text.partition("\ntokenizer:\n")
    line, _, tail = rest.partition("\n")
    (recipes / "default.yaml").write_text(
        f"{head}\ntokenizer:\n  model: ../../models/tokenizer/foundry-sp32k-v1.model\n{tail}")
    broken = copy.deepcopy(doc)
    worker = broken["services"]["foundry-worker"]
    worker["volumes"] = [f"{recipes}:/recipes:ro"]
    worker["command"] += ["--recipe", "/recipes/default.yaml"]
    broken["services"]["ledger"]["command"] += ["--recipe", "/recipes/missing.yaml"]
    problems = check_recipes(broken, image, COMPOSE_DIR)
    assert any("foundry-worker" in p and "/models/tokenizer/foundry-sp32k-v1.model" in p for p in problems)
    assert any("ledger" in p and "/recipes/missing.yaml is not in the container" in p for p in problems)


def test_every_topic_a_service_needs_is_created_first(doc, image):
    assert check_topics(doc, image, COMPOSE_DIR) == []
    no_creator = copy.deepcopy(doc)
    del no_creator["services"]["topics"]
    problems = check_topics(no_creator, image, COMPOSE_DIR)
    assert any("shard-writer" in p and "foundry.live.tokenized" in p for p in problems)
    assert any("foundry-worker" in p and "foundry.raw" in p for p in problems)
    racing = copy.deepcopy(doc)
    racing["services"]["ledger"]["depends_on"] = {"kafka-1": {"condition": "service_healthy"}}
    assert any("ledger" in p and "must start after topics" in p
               for p in check_topics(racing, image, COMPOSE_DIR))
    other_ns = copy.deepcopy(doc)
    other_ns["services"]["trainer"]["command"] += ["--namespace", "staging"]
    assert any("trainer" in p and "foundry.staging.shards" in p for p in check_topics(other_ns, image, COMPOSE_DIR))


def test_replication_fits_the_brokers(doc):
    assert check_replication(doc) == []
    forced_one = copy.deepcopy(doc)
    cmd = forced_one["services"]["topics"]["command"]
    cmd[cmd.index("--replication") + 1] = "1"
    assert any("replication 1" in p and "min.insync.replicas=2" in p for p in check_replication(forced_one))
    too_many = copy.deepcopy(doc)
    too_many["services"]["topics"]["command"][-1] = "4"
    assert any("replication 4" in p for p in check_replication(too_many))
    low_default = copy.deepcopy(doc)  # the budget agent's changelog takes the cluster default
    for name in kafka_services(low_default):
        low_default["services"][name]["environment"]["KAFKA_DEFAULT_REPLICATION_FACTOR"] = 1
    assert any("budget" in p and "cluster default" in p for p in check_replication(low_default))


def test_workers_fit_the_partitions(doc, image):
    assert check_worker_scale(doc, image, COMPOSE_DIR) == []
    crowded = copy.deepcopy(doc)
    crowded["services"]["foundry-worker"]["deploy"]["replicas"] = 9
    assert check_worker_scale(crowded, image, COMPOSE_DIR) == ["foundry-worker: 9 replicas for 4 partitions"]
