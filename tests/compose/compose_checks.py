"""Checks of compose/docker-compose.yml against the image (image_layout.py), the CLI and the
brokers' settings. Each check returns the problems it found, so a test can also show that a
broken compose file is caught."""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

import click
import yaml
from click.testing import CliRunner

from tests.compose.image_layout import REPO, Image

OUTPUT_OPTIONS = {"--out", "--run-dir", "--state-dir", "--export-dir"}  # folders a service writes


def interpolate(value):
    """Compose's ``${VAR:-default}`` / ``${VAR-default}``, taking the defaults (a bare ``${VAR}``
    would start with an empty value, which the file must not rely on)."""
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group(2) is None:
            raise ValueError(f"{m.group(0)} has no default")
        return m.group(3)

    return re.sub(r"\$\{(\w+)(:?-)?([^}]*)\}", sub, value)


def load_compose(path: Path) -> dict:
    doc = interpolate(yaml.safe_load(path.read_text()))
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


def argv(svc: dict) -> list[str]:
    cmd = svc.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def foundry_services(doc: dict) -> dict[str, dict]:
    return {n: s for n, s in doc["services"].items() if argv(s)[:1] == ["foundry"]}


def kafka_services(doc: dict) -> dict[str, dict]:
    return {n: s for n, s in doc["services"].items() if str(s.get("image", "")).startswith("apache/kafka:")}


def resolve_command(words: list[str]) -> tuple[list[str], click.Command | None, list[str]]:
    """(subcommand path, the click command, its arguments) of ``foundry WORDS...``."""
    from foundry.cli import main

    cmd, path, rest = main, [], list(words)
    while isinstance(cmd, click.Group) and rest:
        sub = cmd.get_command(click.Context(cmd), rest[0])
        if sub is None:
            return path + [rest[0]], None, rest[1:]
        cmd, path, rest = sub, path + [rest[0]], rest[1:]
    return path, cmd, rest


def option_value(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


@dataclass(frozen=True)
class Mount:
    target: str
    kind: str  # named | bind | anonymous
    source: str | None
    read_only: bool


def mounts(doc: dict, svc: dict, image: Image, compose_dir: Path) -> list[Mount]:
    out = []
    for spec in svc.get("volumes") or []:
        parts = spec.split(":")
        if len(parts) == 1:
            out.append(Mount(parts[0], "anonymous", None, False))
            continue
        source, target, mode = parts[0], parts[1], (parts[2] if len(parts) > 2 else "rw")
        if source.startswith((".", "/", "~")):
            out.append(Mount(target, "bind", str((compose_dir / source).resolve()), "ro" in mode.split(",")))
        else:
            assert source in (doc.get("volumes") or {}), f"volume {source!r} is not declared"
            out.append(Mount(target, "named", source, "ro" in mode.split(",")))
    taken = {m.target for m in out}
    out += [Mount(v, "anonymous", None, False) for v in image.volumes if v not in taken]
    return out


def _mount_of(path: str, ms: list[Mount]) -> Mount | None:
    found = [m for m in ms if path == m.target or path.startswith(m.target.rstrip("/") + "/")]
    return max(found, key=lambda m: len(m.target)) if found else None


def writable(path: str, ms: list[Mount], image: Image) -> str | None:
    """None if the runtime user can write ``path`` (or create it), else why not."""
    m = _mount_of(path, ms)
    if m is None:
        return None if image.writable_dir(path) else f"{path} is not writable by {image.user} in the image"
    if m.read_only:
        return f"{path} is on the read-only mount {m.target}"
    if m.kind == "bind":
        return None  # the host folder's owner decides; nothing to read here
    # A fresh named or anonymous volume is a copy of the image's folder, owner included.
    if m.target not in image.dirs:
        return f"{m.target} does not exist in the image, so its volume is root's"
    return None if image.writable_dir(m.target) else f"volume {m.target} is not owned by {image.user}"


def exists(path: str, ms: list[Mount], image: Image) -> bool:
    m = _mount_of(path, ms)
    if m is not None and m.kind == "bind":
        return Path(m.source, posixpath.relpath(path, m.target)).exists()
    if m is not None:  # a volume: what the image has there, or the (empty) mount point itself
        return path == m.target or path in image.files or path in image.dirs
    return path in image.files or path in image.dirs


def is_file(path: str, ms: list[Mount], image: Image) -> bool:
    m = _mount_of(path, ms)
    if m is not None and m.kind == "bind":
        return Path(m.source, posixpath.relpath(path, m.target)).is_file()
    return path in image.files


def read_file(path: str, ms: list[Mount], image: Image) -> str | None:
    m = _mount_of(path, ms)
    if m is not None and m.kind == "bind":
        p = Path(m.source, posixpath.relpath(path, m.target))
        return p.read_text() if p.is_file() else None
    origin = image.origin.get(path)
    return (REPO / origin).read_text() if origin else None


def check_commands(doc: dict, image: Image, compose_dir: Path, fake_root: Path) -> list[str]:
    """Every command is a real `foundry` subcommand whose arguments parse; absolute paths are
    mapped into ``fake_root``, where only what the container has exists."""
    problems = []
    runner = CliRunner()
    for name, svc in foundry_services(doc).items():
        path, cmd, args = resolve_command(argv(svc)[1:])
        if cmd is None or isinstance(cmd, click.Group):
            problems.append(f"{name}: `foundry {' '.join(path)}` is not a foundry command")
            continue
        res = runner.invoke(cmd, ["--help"], prog_name=f"foundry {' '.join(path)}")
        if res.exit_code != 0:
            problems.append(f"{name}: `foundry {' '.join(path)} --help` exited {res.exit_code}")
        ms = mounts(doc, svc, image, compose_dir)
        local = []
        for a in args:
            if a.startswith("/"):
                mapped = fake_root / name / a.lstrip("/")
                if is_file(a, ms, image):
                    mapped.parent.mkdir(parents=True, exist_ok=True)
                    mapped.touch()
                elif exists(a, ms, image):
                    mapped.mkdir(parents=True, exist_ok=True)
                a = str(mapped)
            local.append(a)
        try:
            cmd.make_context(" ".join(path), local)
        except click.ClickException as exc:
            problems.append(f"{name}: foundry {' '.join(path)} {' '.join(args)}: {exc.format_message()}")
    return problems


def check_paths(doc: dict, image: Image, compose_dir: Path) -> list[str]:
    """What a service writes is writable by the image's user (its working folder included);
    what it reads exists in the container."""
    problems = []
    for name, svc in foundry_services(doc).items():
        ms = mounts(doc, svc, image, compose_dir)
        why = writable(image.workdir, ms, image)
        if why:
            problems.append(f"{name}: working folder: {why}")
        args = argv(svc)[1:]
        for i, a in enumerate(args):
            if not a.startswith("/"):
                continue
            if i > 0 and args[i - 1] in OUTPUT_OPTIONS:
                why = writable(a, ms, image)
                if why:
                    problems.append(f"{name}: {args[i - 1]} {a}: {why}")
            elif not exists(a, ms, image):
                problems.append(f"{name}: {a} does not exist in the container")
    return problems


def default_recipe_in_image(image: Image) -> str:
    import schemas
    from schemas.recipe import DEFAULT_RECIPE

    rel = DEFAULT_RECIPE.resolve().relative_to(Path(schemas.__file__).resolve().parents[1])
    return posixpath.join(image.package_root, rel.as_posix())


def service_recipe(doc: dict, svc: dict, image: Image, compose_dir: Path) -> tuple[str, dict | None]:
    """(path in the container, parsed YAML or None if the file is not there) of the recipe
    a service runs."""
    path = option_value(argv(svc)[1:], "--recipe") or default_recipe_in_image(image)
    text = read_file(path, mounts(doc, svc, image, compose_dir), image)
    return path, (yaml.safe_load(text) if text is not None else None)


def check_recipes(doc: dict, image: Image, compose_dir: Path) -> list[str]:
    """The recipe each service reads is in the container, and so is its tokenizer model."""
    problems = []
    for name, svc in foundry_services(doc).items():
        _, cmd, _ = resolve_command(argv(svc)[1:])
        if cmd is None or "recipe_path" not in {p.name for p in cmd.params}:
            continue
        path, recipe = service_recipe(doc, svc, image, compose_dir)
        if recipe is None:
            problems.append(f"{name}: recipe {path} is not in the container")
            continue
        ref = (recipe.get("tokenizer") or {}).get("model")
        if not ref:
            continue  # trained from the stream at start
        if ref.startswith("pkg:"):
            target = posixpath.join(image.package_root, ref[len("pkg:"):])
        else:
            target = posixpath.normpath(posixpath.join(posixpath.dirname(path), ref))
        if not is_file(target, mounts(doc, svc, image, compose_dir), image):
            problems.append(f"{name}: the tokenizer {ref!r} of {path} resolves to {target}, not in the container")
    return problems


def _topics_of(args: list[str]):
    from schemas import Topics

    return Topics(namespace=option_value(args, "--namespace") or "live",
                  raw_name=option_value(args, "--raw-topic") or "foundry.raw")


def topic_needs(doc: dict, image: Image, compose_dir: Path) -> dict[str, set[str]]:
    """Topics each service reads or writes, by what its command is. A command missing here is
    an error: a new service must say what it needs."""
    needs = {}
    for name, svc in foundry_services(doc).items():
        path, _, args = resolve_command(argv(svc)[1:])
        t = _topics_of(args)
        key = " ".join(path)
        if key == "worker":
            _, recipe = service_recipe(doc, svc, image, compose_dir)
            ops = {c.get("op") for c in (recipe or {}).get("curation", [])}
            needs[name] = {t.raw, t.keyed, t.tokenized, t.rejections, t.dedup_snapshots} | (
                {t.budgets} if "budget_prune" in ops else set())
        elif key == "shard-writer":
            needs[name] = {t.tokenized, t.shards}
        elif key == "ledger":
            needs[name] = {t.rejections}
        elif key == "budget":
            from streams.budget.agent import changelog_topic

            no_rej = "--no-rejections" in args
            needs[name] = {t.values, t.budgets, changelog_topic(t.namespace)} | (set() if no_rej else {t.rejections})
        elif key == "train":
            needs[name] = {t.shards, t.values}
        elif key == "ingest files" or key == "ingest warc":
            needs[name] = {t.raw}
        elif key == "topics create":
            needs[name] = set()
        else:
            raise AssertionError(f"{name}: say in topic_needs which topics `foundry {key}` needs")
    return needs


def topic_creators(doc: dict) -> dict[str, tuple[set[str], str]]:
    """service -> (topics it creates, how their replication is chosen: 'N' or 'cluster default')."""
    from streams.budget.agent import changelog_topic

    out = {}
    for name, svc in foundry_services(doc).items():
        path, cmd, args = resolve_command(argv(svc)[1:])
        if path == ["topics", "create"]:
            given = option_value(args, "--replication")
            param = {p.name: p for p in cmd.params}.get("replication")
            if given is None and (param is None or param.default is not None):
                how = "unknown" if param is None else str(param.default)
            else:
                how = given or "cluster default"
            out[name] = ({s.name for s in _topics_of(args).specs()}, how)
        elif path == ["budget"]:
            # the agent makes its table's changelog itself, at the cluster's default replication
            out[name] = ({changelog_topic(_topics_of(args).namespace)}, "cluster default")
    return out


def check_topics(doc: dict, image: Image, compose_dir: Path) -> list[str]:
    """Auto-creation is off: every topic a service needs is created by some service, and a
    service that needs topics made by another starts only after that one finished."""
    problems = []
    creators = topic_creators(doc)
    made = {topic: who for who, (topics, _) in creators.items() for topic in topics}
    for name, needed in topic_needs(doc, image, compose_dir).items():
        for topic in sorted(needed - set(made)):
            problems.append(f"{name}: needs topic {topic}, which no service creates")
        deps = doc["services"][name].get("depends_on") or {}
        for who in sorted({made[t] for t in needed if t in made} - {name}):
            cond = deps.get(who, {}).get("condition") if isinstance(deps, dict) else None
            if cond != "service_completed_successfully":
                problems.append(f"{name}: must start after {who} created its topics "
                                f"(depends_on: {who}: condition: service_completed_successfully)")
            elif doc["services"][who].get("restart", "no") != "no":
                problems.append(f"{who}: a one-shot creator must not restart")
    for who, svc in foundry_services(doc).items():
        if resolve_command(argv(svc)[1:])[0] != ["topics", "create"]:
            continue
        deps = doc["services"][who].get("depends_on") or {}
        for k in kafka_services(doc):
            if (deps.get(k) or {}).get("condition") != "service_healthy":
                problems.append(f"{who}: must wait for {k} to be healthy")
    return problems


def check_replication(doc: dict) -> list[str]:
    """Replication every creator asks for fits the brokers: at least min.insync.replicas (or
    acks=all writes fail) and at most the number of brokers (or creation fails)."""
    problems = []
    kafkas = kafka_services(doc)
    if not kafkas:
        return ["no Kafka broker services"]
    envs = [s.get("environment") or {} for s in kafkas.values()]

    def setting(key: str, default: int) -> int:
        values = {int(e.get(key, default)) for e in envs}
        if len(values) > 1:
            problems.append(f"{key} differs between brokers: {sorted(values)}")
        return max(values)

    n, min_isr = len(kafkas), setting("KAFKA_MIN_INSYNC_REPLICAS", 1)
    default_rf = setting("KAFKA_DEFAULT_REPLICATION_FACTOR", 1)
    for key, isr_key in (("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_MIN_INSYNC_REPLICAS"),
                         ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR")):
        rf, isr = setting(key, 3), setting(isr_key, 1)
        if not isr <= rf <= n:
            problems.append(f"{key}={rf} with {isr_key}={isr} on {n} brokers")
    for who, (_, how) in topic_creators(doc).items():
        if how == "unknown":
            problems.append(f"{who}: `foundry topics create` has no --replication option")
            continue
        rf = default_rf if how == "cluster default" else int(how)
        if not min_isr <= rf <= n:
            problems.append(f"{who}: creates topics with replication {rf} ({how}); the {n} brokers need "
                            f"min.insync.replicas={min_isr} <= replication <= {n}")
    return problems


def check_worker_scale(doc: dict, image: Image, compose_dir: Path) -> list[str]:
    """More workers than partitions would idle: the group gives each partition to one worker."""
    problems = []
    for name, svc in foundry_services(doc).items():
        if resolve_command(argv(svc)[1:])[0] != ["worker"]:
            continue
        replicas = int((svc.get("deploy") or {}).get("replicas", 1))
        _, recipe = service_recipe(doc, svc, image, compose_dir)
        parts = int((recipe or {}).get("partitions", 4))
        if replicas > parts:
            problems.append(f"{name}: {replicas} replicas for {parts} partitions")
    return problems
