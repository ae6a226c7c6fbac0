"""`foundry crawl`, `foundry ingest warc|files`, `foundry generate`: the sources.

Registered in the main CLI (``foundry.cli``); also runnable on its own as
``python -m foundry.cli_sources ...``. Every command publishes RawDocuments to
the raw topic through ``iolayer.publisher.RecordPublisher``, shows a rate
line on stderr while it runs and prints a summary at the end.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import click

DEFAULT_BOOTSTRAP = os.environ.get("FOUNDRY_BOOTSTRAP", "127.0.0.1:9092")


def _common(f):
    opts = [
        click.option("--bootstrap", default=DEFAULT_BOOTSTRAP, show_default=True,
                     help="Kafka bootstrap servers (env FOUNDRY_BOOTSTRAP)."),
        click.option("--raw-topic", default="foundry.raw", show_default=True, help="The raw topic to publish to."),
        click.option("--wait", "wait_s", default=0.0, show_default=True,
                     help="Seconds to keep retrying when no broker answers at start."),
        click.option("--no-progress", is_flag=True, help="No progress bar / rate line."),
        click.option("--summary-json", type=click.Path(dir_okay=False), default=None,
                     help="Also write the summary as JSON here."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _ingest_opts(f):
    opts = [
        click.option("--state-dir", type=click.Path(file_okay=False), default=None,
                     help="Checkpoints for resuming (default: $FOUNDRY_STATE/sources or ./var/sources)."),
        click.option("--restart", is_flag=True, help="Ignore checkpoints: read every input from the start."),
        click.option("--flush-every", default=2000, show_default=True,
                     help="Documents between flush + checkpoint (also every 2 s)."),
        click.option("--broker-retry", default=300.0, show_default=True,
                     help="If deliveries fail (broker gone), wait this long for it, then resume from the checkpoint."),
        click.option("--delivery-timeout", default=300.0, show_default=True,
                     help="Seconds librdkafka keeps retrying one message before the delivery fails."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


ENDLESS = 10**12  # --n-docs 0: a generator that runs until it is stopped


def _pacing_opts(f):
    opts = [
        click.option("--rate", type=float, default=None, metavar="DOCS_PER_S",
                     help="Publish at most this many documents a second (a source that arrives over time)."),
        click.option("--flood-after", type=int, default=None, metavar="N",
                     help="After N documents the source turns into a near-duplicate spam flood (demos, tests)."),
        click.option("--flood-docs", type=int, default=None, help="Documents of the flood (default: no end)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _shaped(src, rate, flood_after, flood_docs, seed):
    """The source with the flood and the pacing asked for."""
    from streams.sources.low_value import NearDupFlood
    from streams.sources.pacing import Paced

    if flood_after is not None:
        src = NearDupFlood(src, after=flood_after, flood_docs=flood_docs, seed=seed)
    return Paced(src, rate) if rate else src


def _watch_folder(make_source, every_s: float, ingest) -> None:
    """Ingest whatever the folder holds, then again every ``every_s`` seconds until SIGTERM/SIGINT
    (checkpoints skip the files already done, so each round reads only the new ones)."""
    import time

    stop, busy = [], []

    def on_signal(*_):
        stop.append(1)
        if busy:  # mid-file: leave now; the checkpoint and the recovery scan make the rerun exact
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    while not stop:
        src = make_source()
        if src.paths:
            busy.append(1)
            try:
                ingest(src)
            except KeyboardInterrupt:
                return
            finally:
                busy.clear()
        deadline = time.monotonic() + every_s
        while not stop and time.monotonic() < deadline:
            time.sleep(min(0.2, every_s))


def _start(bootstrap: str, topic: str, wait_s: float) -> None:
    from iolayer.publisher import BrokerUnavailable
    from streams.sources.runner import ensure_raw_topic, wait_for_broker

    try:
        wait_for_broker(bootstrap, wait_s, log=lambda m: click.echo(m, err=True))
    except BrokerUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    ensure_raw_topic(bootstrap, topic)


def _finish(lines: list[str], data: dict, summary_json: str | None) -> None:
    for line in lines:
        click.echo(line)
    if summary_json:
        Path(summary_json).write_text(json.dumps(data, indent=2, default=str))


def _run_ingest(source, command: str, *, bootstrap, raw_topic, wait_s, no_progress, summary_json, state_dir,
                restart, flush_every, broker_retry, delivery_timeout) -> None:
    from iolayer.publisher import BrokerUnavailable, PublishError, RecordPublisher
    from streams.sources.progress import CheckpointStore, TopicWatch
    from streams.sources.runner import IngestRunner

    _start(bootstrap, raw_topic, wait_s)
    watch = TopicWatch(bootstrap, raw_topic)
    runner = IngestRunner(
        lambda: RecordPublisher(bootstrap, raw_topic, client_id=f"foundry-{command.replace(' ', '-')}",
                                delivery_timeout_s=delivery_timeout),
        watch, CheckpointStore(state_dir), flush_every=flush_every, progress=not no_progress,
        broker_retry_s=broker_retry, bootstrap=bootstrap, restart=restart,
        log=lambda m: click.echo(m, err=True))
    try:
        summary = runner.run(source, command)
    except (BrokerUnavailable, PublishError) as exc:
        raise click.ClickException(f"{command} stopped: {exc} (rerun the same command to resume)") from None
    finally:
        watch.close()
    _finish(summary.lines(), summary.to_dict(), summary_json)


# ---------------------------------------------------------------------- ingest
@click.group()
def ingest() -> None:
    """Ingest files into the raw topic (resumable: rerun the same command after a crash)."""


@ingest.command("warc")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--source", default="warc", show_default=True, help="Source name on every document.")
@click.option("--licence", default=None, help="Licence on every document.")
@click.option("--extractor", type=click.Choice(["trafilatura", "trafilatura-fast", "resiliparse"]),
              default="trafilatura", show_default=True, help="HTML main-text extractor.")
@click.option("--max-record-mb", default=16, show_default=True,
              help="Records larger than this are rejected as too_large.")
@_ingest_opts
@_common
def ingest_warc(paths, source, licence, extractor, max_record_mb, **kw) -> None:
    """WARC / WET files (.warc, .warc.gz, .warc.wet.gz) or folders of them."""
    from streams.sources.warc import WarcSource

    src = WarcSource(list(paths), source=source, licence=licence, extractor=extractor,
                     max_record_bytes=max_record_mb << 20)
    if not src.paths:
        raise click.ClickException("no WARC files found")
    _run_ingest(src, "ingest warc", **kw)


@ingest.command("files")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--source", required=True, help="Source name on every document (e.g. the corpus name).")
@click.option("--licence", required=True, help="Licence on every document (e.g. CC-BY-4.0).")
@click.option("--text-field", default="text", show_default=True, help="Field holding the text (dotted for nested).")
@click.option("--id-field", default="id", show_default=True, help="Field holding the id (else file:line).")
@click.option("--url-field", default="url", show_default=True)
@click.option("--lang-field", default="lang", show_default=True)
@_pacing_opts
@click.option("--watch", "watch_s", type=float, default=None, metavar="SECONDS",
              help="A drop folder: keep running and look for new files every SECONDS (write a file under a "
                   "name starting with '.' or ending in '.tmp', then rename it, so it is read only when whole).")
@_ingest_opts
@_common
def ingest_files(paths, source, licence, text_field, id_field, url_field, lang_field, rate, flood_after, flood_docs,
                 watch_s, **kw) -> None:
    """JSONL, JSONL.gz and Parquet files or folders of them (a licensed corpus)."""
    from streams.sources.files import FieldMap, FileSource

    def files():
        src = FileSource(list(paths), source=source, licence=licence,
                         fields=FieldMap(text=text_field, id=id_field, url=url_field, lang=lang_field))
        src.paths = [p for p in src.paths if not (p.name.startswith(".") or p.name.endswith(".tmp"))]
        return src

    if watch_s is None:
        src = files()
        if not src.paths:
            raise click.ClickException("no .jsonl, .jsonl.gz or .parquet files found")
        _run_ingest(_shaped(src, rate, flood_after, flood_docs, 0), "ingest files", **kw)
        return
    _watch_folder(files, watch_s, lambda src: _run_ingest(_shaped(src, rate, flood_after, flood_docs, 0),
                                                          "ingest files", **kw))


# -------------------------------------------------------------------- generate
@click.command()
@click.option("--n-docs", default=1000, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--mix", default="0.5,0.3,0.2", show_default=True, help="Weights of English, Chinese, code-switched.")
@click.option("--dup-rate", default=0.05, show_default=True, help="Share of exact duplicates.")
@click.option("--near-dup-rate", default=0.03, show_default=True, help="Share of near duplicates.")
@click.option("--boilerplate-rate", default=0.05, show_default=True, help="Share of documents with boilerplate.")
@click.option("--source", default="synthetic", show_default=True)
@click.option("--kind", type=click.Choice(["mixed", "boilerplate", "repeated"]), default="mixed", show_default=True,
              help="mixed: the word-salad generator with the rates above; boilerplate / repeated: pages of only "
                   "navigation and footer lines / one sentence many times (streams/sources/low_value.py).")
@_pacing_opts
@click.option("--checkpoint", "model_checkpoint", default=None,
              help="Sample documents from the trainer's model instead: its ONNX export folder (latest.json).")
@click.option("--tokenizer", "tokenizer_model", default=None,
              help="SentencePiece model of the export's tokenizer (default: the shipped one).")
@click.option("--max-tokens", default=128, show_default=True, help="Tokens per sampled document.")
@_ingest_opts
@_common
def generate(n_docs, seed, mix, dup_rate, near_dup_rate, boilerplate_rate, source, kind, rate, flood_after,
             flood_docs, model_checkpoint, tokenizer_model, max_tokens, **kw) -> None:
    """Generated documents (marked synthetic), reproducible from the seed; --n-docs 0: no end."""
    from streams.sources.low_value import LowValueSource
    from streams.sources.synthetic import SyntheticConfig, SyntheticSource

    shape = lambda src: _shaped(src, rate, flood_after, flood_docs, seed)  # noqa: E731
    if kind != "mixed":
        name = source if source != "synthetic" else kind
        _run_ingest(shape(LowValueSource(kind, n_docs=n_docs or None, seed=seed, source=name)), "generate", **kw)
        return

    if model_checkpoint:
        from streams.sources.model_samples import ModelSampleSource

        from importlib import resources

        # the shipped tokenizer is package data of `models` (found in a wheel install too)
        tok = tokenizer_model or os.fspath(resources.files("models") / "tokenizer" / "foundry-sp32k-v1.model")
        try:
            src = ModelSampleSource(model_checkpoint, tok, n_docs=n_docs, seed=seed, max_tokens=max_tokens,
                                    source=source if source != "synthetic" else "synthetic-model")
        except (FileNotFoundError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        _run_ingest(src, "generate", **kw)
        return
    try:
        weights = tuple(float(x) for x in mix.split(","))
    except ValueError:
        raise click.BadParameter("three comma-separated numbers", param_hint="--mix") from None
    if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
        raise click.BadParameter("three non-negative weights, not all 0", param_hint="--mix")
    cfg = SyntheticConfig(n_docs=n_docs or ENDLESS, seed=seed, dup_rate=dup_rate, mix=weights,
                          near_dup_rate=near_dup_rate, boilerplate_rate=boilerplate_rate)
    _run_ingest(shape(SyntheticSource(cfg, source=source)), "generate", **kw)


# ----------------------------------------------------------------------- crawl
@click.command()
@click.option("--seed", "seeds", multiple=True, help="Seed URL (repeatable). Without seeds: resume the frontier.")
@click.option("--seeds-file", type=click.Path(exists=True, dir_okay=False), help="File with one seed URL a line.")
@click.option("--group", default="foundry-crawler", show_default=True,
              help="Consumer group: crawler processes in one group share the hosts.")
@click.option("--frontier-topic", default="foundry.crawl.frontier", show_default=True)
@click.option("--seen-topic", default="foundry.crawl.seen", show_default=True)
@click.option("--partitions", default=4, show_default=True, help="Partitions of the crawl topics when created.")
@click.option("--max-depth", default=3, show_default=True)
@click.option("--any-site", is_flag=True, help="Do not restrict links to the seed's site.")
@click.option("--allow-domain", multiple=True, help="Also crawl this domain and its subdomains (repeatable).")
@click.option("--deny", multiple=True, help="Regular expression of URLs never fetched (repeatable).")
@click.option("--delay", default=1.0, show_default=True, help="Seconds between two requests to one host.")
@click.option("--host-concurrency", default=1, show_default=True)
@click.option("--concurrency", default=16, show_default=True, help="Requests in flight in all.")
@click.option("--user-agent", default="FoundryBot/0.1 (token-foundry crawler)", show_default=True)
@click.option("--timeout", default=20.0, show_default=True, help="Read timeout (s) of one request.")
@click.option("--retries", default=2, show_default=True)
@click.option("--backoff", default=1.0, show_default=True, help="First retry delay (s), doubling.")
@click.option("--max-bytes", default=5 << 20, show_default=True, help="Larger bodies are rejected as too_large.")
@click.option("--max-redirects", default=5, show_default=True)
@click.option("--max-pages", default=None, type=int, help="Stop after this many documents.")
@click.option("--idle-exit", default=None, type=float, help="Stop once the frontier is empty this many seconds.")
@click.option("--max-seconds", default=None, type=float)
@click.option("--checkpoint-s", default=2.0, show_default=True,
              help="Seconds between flush + frontier commit (what a killed crawler may fetch again).")
@click.option("--warc-dir", default=None, type=click.Path(file_okay=False), help="Also write fetched pages as WARC.")
@click.option("--extractor", type=click.Choice(["trafilatura", "trafilatura-fast", "resiliparse"]),
              default="trafilatura", show_default=True)
@click.option("--source", default="crawl", show_default=True)
@click.option("--licence", default=None)
@_common
def crawl(seeds, seeds_file, group, frontier_topic, seen_topic, partitions, max_depth, any_site, allow_domain, deny,
          delay, host_concurrency, concurrency, user_agent, timeout, retries, backoff, max_bytes, max_redirects,
          max_pages, idle_exit, max_seconds, checkpoint_s, warc_dir, extractor, source, licence, bootstrap,
          raw_topic, wait_s, no_progress, summary_json) -> None:
    """Crawl the web from seeds through a Kafka frontier (run several in one group to scale)."""
    from iolayer.publisher import PublishError, RecordPublisher
    from streams.sources.crawl.engine import CrawlConfig, Crawler
    from streams.sources.crawl.fetch import FetchConfig
    from streams.sources.crawl.frontier import KafkaFrontier, ensure_crawl_topics
    from streams.sources.urls import Scope

    urls = list(seeds)
    if seeds_file:
        lines = Path(seeds_file).read_text().splitlines()
        urls += [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    _start(bootstrap, raw_topic, wait_s)
    ensure_crawl_topics(bootstrap, partitions, frontier_topic=frontier_topic, seen_topic=seen_topic)
    cfg = CrawlConfig(
        fetch=FetchConfig(user_agent=user_agent, read_timeout_s=timeout, total_timeout_s=max(3 * timeout, 10),
                          retries=retries, backoff_s=backoff, max_body_bytes=max_bytes, max_redirects=max_redirects),
        scope=Scope(same_site=not any_site, allowed_domains=tuple(allow_domain), max_depth=max_depth,
                    deny=tuple(deny)),
        delay_s=delay, host_concurrency=host_concurrency, concurrency=concurrency, max_pages=max_pages,
        idle_exit_s=idle_exit, max_seconds=max_seconds, extractor=extractor, source=source, licence=licence,
        warc_dir=warc_dir, checkpoint_s=checkpoint_s)
    raw = RecordPublisher(bootstrap, raw_topic, client_id="foundry-crawler-raw")
    frontier = KafkaFrontier(bootstrap, group=group, frontier_topic=frontier_topic, seen_topic=seen_topic)
    crawler = Crawler(cfg, frontier, raw.publish, raw.flush, progress=not no_progress,
                      log=lambda m: click.echo(m, err=True))
    if urls:
        added = crawler.add_seeds(urls)
        click.echo(f"{len(added)} seed(s) added to {frontier_topic}", err=True)

    async def main():
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, crawler.stop)
        return await crawler.run()

    try:
        summary = asyncio.run(main())
    except PublishError as exc:  # offsets are committed only after a good flush: a rerun resumes safely
        raise click.ClickException(f"crawl stopped: {exc} (rerun the same command to resume)") from None
    finally:
        frontier.close()
    _finish(summary.lines(), summary.to_dict(), summary_json)


@click.group()
def cli() -> None:
    """Token Foundry sources (also available as `foundry crawl|ingest|generate`)."""


cli.add_command(crawl)
cli.add_command(ingest)
cli.add_command(generate)

if __name__ == "__main__":
    sys.exit(cli())
