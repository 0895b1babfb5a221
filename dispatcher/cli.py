"""The `dispatcher` command line. Exit codes: 0 ok, 1 runtime failure, 2 usage or config.

This is the entry point: the only place that reads the environment and the configuration files.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from dispatcher import __version__
from dispatcher.allocator import tune_garbage_collector
from dispatcher.config_loader import CONFIG_PATH_ENV, load_partners, load_runtime, load_settings
from dispatcher.errors import ConfigError, DispatcherError
from dispatcher.explain import NotJsonError, explain, read_events, render_text
from dispatcher.logs import configure_logging
from dispatcher.moments import parse_moment
from dispatcher.partners import names as partner_names
from schemas.dead_letter import DEAD_LETTER_REASONS, DEFAULT_REPLAY_REASONS
from schemas.events import IN_APP_EVENT, INSTALL, EventType
from schemas.postback_log import LOGGED_OUTCOMES

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

log = logging.getLogger("dispatcher")

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run the command, map failures to exit codes."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "command"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    configure_logging(args.log_level or "INFO", args.log_format or "text")
    command: Command = args.command
    try:
        return command(args)
    except ConfigError as exc:
        print(_config_error_text(exc), file=sys.stderr)
        return EXIT_USAGE
    except DispatcherError as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE


def _config_error_text(exc: ConfigError) -> str:
    count = len(exc.issues)
    header = f"configuration error{'s' if count != 1 else ''} ({count}):"
    return "\n".join([header, *(f"  {issue}" for issue in exc.issues)])


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config or os.environ.get(CONFIG_PATH_ENV) or "dispatcher.yaml")


# ---------------------------------------------------------------------------------------------
# Commands


def _run(args: argparse.Namespace) -> int:
    from dispatcher.allocator import keep_freed_memory, libc_mallopt  # noqa: PLC0415
    from dispatcher.health import Health, MetricsServer  # noqa: PLC0415
    from dispatcher.kafka_clients import (  # noqa: PLC0415
        make_consumer,
        make_log_reader,
        make_producer,
    )
    from dispatcher.metrics import Metrics  # noqa: PLC0415
    from dispatcher.worker import Worker  # noqa: PLC0415

    settings = load_settings(_config_path(args), os.environ)
    runtime = settings.runtime
    redactor = configure_logging(
        args.log_level or runtime.log.level,
        args.log_format or runtime.log.format,
        settings.secrets(),
        tags={} if args.process_index is None else {"worker_process": str(args.process_index)},
    )
    if runtime.worker.processes > 1 and args.process_index is None:
        from dispatcher.supervisor import supervise  # noqa: PLC0415

        return supervise(_run_argv(args), runtime.worker.processes, runtime.metrics.host,
                         runtime.metrics.port, runtime.worker.shutdown_timeout_s, os.environ,
                         runtime.kafka.group_instance_id)  # fmt: skip
    log.info(
        "connecting to Kafka at %s (giving up after %.0f s: kafka.connect_timeout_s)",
        ",".join(runtime.kafka.bootstrap_servers),
        runtime.kafka.connect_timeout_s,
    )
    for partner in settings.partners.partners:
        # where postbacks go, so a sandbox endpoint left in a production config shows (the
        # host only: a URL could carry a credential, and the token is never logged)
        active = sum(1 for app in partner.apps if app.active)
        log.info("partner %s: postbacks to %s (%d of %d apps active)", partner.name,
                 urlsplit(partner.endpoint).netloc, active, len(partner.apps))  # fmt: skip
    keep_freed_memory(os.environ, libc_mallopt())  # before the Kafka clients' threads allocate
    metrics, health = Metrics(), Health()
    try:
        server = MetricsServer(metrics, health, runtime.metrics.host, runtime.metrics.port)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", runtime.metrics.host, runtime.metrics.port, exc)
        return EXIT_FAILURE
    server.start()
    log.info(
        "metrics on http://%s:%d/metrics (also /healthz, /readyz)",
        runtime.metrics.host,
        server.port,
    )
    if args.port_fd is not None:
        from dispatcher.supervisor import tell_port  # noqa: PLC0415

        tell_port(args.port_fd, server.port)
    producer = None
    try:
        consumer = make_consumer(settings)
        producer = make_producer(settings)
        worker = Worker(
            settings,
            consumer,
            producer,
            metrics,
            health,
            load_partners=lambda: load_partners(settings.partners_dir, os.environ),
            on_secrets=redactor.update,
            log_reader=lambda: make_log_reader(settings),
        )

        def stop(signum: int, frame: FrameType | None) -> None:
            log.info("received %s", signal.Signals(signum).name)
            worker.request_stop()

        def reload(signum: int, frame: FrameType | None) -> None:
            log.info("received SIGHUP: reloading partner files")
            worker.request_reload()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)
        tune_garbage_collector()
        worker.run()
    finally:
        if producer is not None:
            producer.close(timeout=5)
        server.stop()
    return EXIT_OK


def _run_argv(args: argparse.Namespace) -> list[str]:
    """`dispatcher run` as given, for each worker process of a supervisor."""
    argv = ["run"]
    for flag, value in (("--config", args.config), ("--log-level", args.log_level),
                        ("--log-format", args.log_format)):  # fmt: skip
        if value is not None:
            argv += [flag, value]
    return argv


def _topics_create(args: argparse.Namespace) -> int:
    from dispatcher.kafka_clients import create_topics  # noqa: PLC0415

    settings = load_settings(_config_path(args), os.environ, require_secrets=False)
    for topic, outcome in create_topics(settings, args.partitions, args.replication_factor):
        print(f"{topic}: {outcome}")
    return EXIT_OK


# A wildcard address listens on every interface: the probe asks over loopback.
_LOOPBACK_FOR = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104


def _health(args: argparse.Namespace) -> int:
    """Ask the running worker's /healthz (or /readyz) on the configured metrics address."""
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    metrics = load_runtime(_config_path(args), os.environ).metrics
    if metrics.port == 0:
        print("metrics.port is 0 (a free port picked at start): nothing to probe",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    host = _LOOPBACK_FOR.get(metrics.host, metrics.host)
    netloc = f"[{host}]:{metrics.port}" if ":" in host else f"{host}:{metrics.port}"
    url = f"http://{netloc}/{'readyz' if args.ready else 'healthz'}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(url, timeout=args.timeout) as answer:
            print(f"{url}: {answer.read().decode(errors='replace').strip()}")
            return EXIT_OK
    except urllib.error.HTTPError as exc:
        print(f"{url}: {exc.code} {exc.read().decode(errors='replace').strip()}", file=sys.stderr)
    except OSError as exc:
        print(f"{url}: {getattr(exc, 'reason', None) or exc}", file=sys.stderr)
    return EXIT_FAILURE


def _link(args: argparse.Namespace) -> int:
    from dispatcher.links import LinkError  # noqa: PLC0415

    try:
        return _print_links(args)
    except LinkError as exc:
        print(f"dispatcher link: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _print_links(args: argparse.Namespace) -> int:
    from dispatcher.links import LinkError, build_links, parse_params  # noqa: PLC0415
    from dispatcher.partners import adapter_for  # noqa: PLC0415

    settings = load_settings(_config_path(args), os.environ, require_secrets=False)
    partners = settings.partners.partners
    if args.partner is not None and args.partner not in {p.name for p in partners}:
        raise LinkError(
            f"partner {args.partner!r} has no file in the partners directory; allowed: "
            + ", ".join(sorted(p.name for p in partners))
        )
    chosen = [p for p in partners if args.partner in (None, p.name)]
    if args.media_source and args.partner is None:
        chosen = [p for p in chosen if p.is_partner_media_source(args.media_source)] or chosen
    with_app = [(p, app) for p in chosen if (app := p.app(args.app)) is not None]
    if not with_app:
        where = f"the {args.partner} file" if args.partner else "any partner file"
        configured = sorted({a.app_id for p in chosen for a in p.apps})
        raise LinkError(
            f"app {args.app} is not configured in {where}; configured: " + ", ".join(configured)
        )
    params = parse_params(args.param or [])
    links = [
        build_links(
            partner,
            adapter_for(partner.name),
            app,
            media_source=args.media_source,
            click_lookback=args.click_lookback,
            view_through_lookback=args.view_through_lookback,
            params=params,
        )
        for partner, app in with_app
    ]
    for entry in links:
        for warning in entry.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps({"app_id": args.app, "links": [e.as_json() for e in links]}, indent=2))
        return EXIT_OK
    for entry in links:
        print(f"{entry.partner}, app {entry.app_id} (media source {entry.media_source})")
        print("  click link (the partner's click tracking URL):")
        print(f"    {entry.click}")
        if entry.impression is not None:
            print("  impression link (the partner's impression tracking URL):")
            print(f"    {entry.impression}")
    print("AppsFlyer does not save these links: keep this output as their record.")
    return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    from dispatcher.replay import DEFAULT_REASONS, ReplayReport, replay_dead_letters  # noqa: PLC0415

    settings = load_settings(_config_path(args), os.environ, require_secrets=False)
    reasons = tuple(args.reason) if args.reason else DEFAULT_REASONS

    def progress(report: ReplayReport) -> None:
        print(f"  scanned {report.scanned} dead letters", file=sys.stderr)

    verb = "would replay" if args.dry_run else "replaying"
    whose = f" of partner {args.partner}" if args.partner else ""
    print(f"{verb} dead letters{whose} with reason {', '.join(reasons)}", file=sys.stderr)
    report = replay_dead_letters(
        settings, reasons, args.limit, args.dry_run, args.from_beginning, progress, args.partner
    )
    summary = "would be replayed" if args.dry_run else "replayed"
    other_partners = f"; other partners {report.skipped_other_partner}" if args.partner else ""
    print(f"{report.replayed} {summary} (scanned {report.scanned}; other reasons "
          f"{report.skipped_other_reason}{other_partners}; already_delivered "
          f"{report.already_delivered}; not replayable {report.unreplayable})")  # fmt: skip
    for topic, count in sorted(report.by_topic.items()):
        print(f"  topic {topic}: {count}")
    for partner, count in sorted(report.by_partner.items()):
        print(f"  partner {partner}: {count}")
    return EXIT_OK


def _replay_range(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError  # noqa: PLC0415

    from dispatcher.backfill import RangeReport, replay_range  # noqa: PLC0415
    from dispatcher.postbacks import iso_z as _iso  # noqa: PLC0415

    now_s = time.time()
    try:
        from_s, to_s = parse_moment(args.from_, now_s), parse_moment(args.to, now_s)
    except ValueError as exc:
        print(f"dispatcher replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if to_s < from_s:
        print("dispatcher replay: --to is before --from", file=sys.stderr)
        return EXIT_USAGE
    settings = load_settings(_config_path(args), os.environ, require_secrets=not args.dry_run)
    configure_logging("WARNING", "text", settings.secrets())
    span = f"from {_iso(from_s)} to {_iso(to_s)}"
    verb = "would replay" if args.dry_run else "replaying"
    print(f"{verb} {settings.runtime.kafka.topics.installs} and "
          f"{settings.runtime.kafka.topics.in_app_events} {span}, decided with today's config "
          f"at {_iso(now_s)}", file=sys.stderr)  # fmt: skip
    interrupted = threading.Event()

    def interrupt(signum: int, frame: FrameType | None) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt
        print("\nstopping: nothing more is read; what is out finishes (Ctrl-C again to quit "
              "now)", file=sys.stderr)  # fmt: skip
        interrupted.set()

    def progress(report: RangeReport) -> None:
        at = f", at {_iso(report.last_s)}" if report.last_s is not None else ""
        sent = (
            "" if args.dry_run else f", sent {report.sent}, final {sum(report.outcomes.values())}"
        )
        print(f"  read {report.read} records{at}{sent}", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        report = replay_range(
            settings, from_s, to_s, partner=args.partner, app=args.app, dry_run=args.dry_run,
            progress=progress, stopping=interrupted.is_set, now_s=now_s,
        )  # fmt: skip
    except KafkaError as exc:
        print(f"dispatcher replay: cannot read the source topics: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        signal.signal(signal.SIGINT, previous)
    if not report.in_range:
        print(f"no records {span} in the source topics", file=sys.stderr)
        return EXIT_FAILURE
    print(render_range_report(report, args.dry_run))
    if report.stopped:
        resume = _iso(report.last_s) if report.last_s is not None else _iso(from_s)
        print(
            f"stopped before the end of the range: the last record handled is from {resume}; "
            f"run again with --from {resume} (what was delivered is not sent twice)"
        )
        return EXIT_FAILURE
    return EXIT_OK


def render_range_report(report: Any, dry_run: bool) -> str:
    """The per-partner-app table of a range replay (with, for what is owed, how much of it the
    postback log shows delivered already), and its totals."""
    rows = [("partner", "destination", "decision", "reason", "events", "already delivered")]
    for (partner, destination, decision, reason), count in sorted(report.decisions.items()):
        already = (
            str(report.already_delivered[(partner, destination)]) if decision == "send" else ""
        )
        rows.append((partner, destination, decision, str(reason), str(count), already))
    widths = [max(len(row[n]) for row in rows) for n in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]  # fmt: skip
    already = sum(report.already_delivered.values())
    lines.append(
        f"{report.in_range} records in the range ({report.bad_input} bad input); "
        f"already_delivered {already} (the postback log shows them delivered)"
    )
    if dry_run:
        lines.append(f"would send {report.sent}; sent nothing (--dry-run)")
    elif report.sent:
        outcomes = ", ".join(f"{name} {count}" for name, count in sorted(report.outcomes.items()))
        lines.append(f"sent {report.sent}: {outcomes or 'none final yet'}")
    else:
        lines.append("sent 0")
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    from dispatcher.devtools.demo import run_demo  # noqa: PLC0415

    return run_demo(args.events, args.keep_running, args.metrics_port)


def _broker(args: argparse.Namespace) -> int:
    from dispatcher.devtools.broker import LocalBroker  # noqa: PLC0415

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    with LocalBroker(port=args.port, log_path=args.log) as broker:
        topics = args.topic or []
        if topics:
            broker.create_topics({name: args.partitions for name in topics})
        print(f"local broker (Tansu, memory storage) on {broker.bootstrap}", flush=True)
        if topics:
            print(f"  topics: {', '.join(topics)} ({args.partitions} partitions each)", flush=True)
        print("  its data lives in memory: gone when it stops (Ctrl-C, SIGTERM)", flush=True)
        stop.wait()
    return EXIT_OK


def _sandbox(args: argparse.Namespace) -> int:
    from dispatcher.devtools.sandbox import PartnerSandbox, serve_forever  # noqa: PLC0415

    token = os.environ.get(args.token_env) if args.token_env else None
    # It keeps every event it accepted: with the default thresholds the collector walks them
    # all ever more often, and its CPU per event grows with what it has received.
    tune_garbage_collector()
    sandbox = PartnerSandbox(
        args.host, args.port, args.control_port, token=token, record_payloads=not args.no_payloads
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        print(f"partner sandbox: TikTok {sandbox.url}, Ocean Engine {sandbox.oceanengine_url}",
              flush=True)  # fmt: skip
        await serve_forever(sandbox)

    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(main())
    return EXIT_OK


def _check_config(args: argparse.Namespace) -> int:
    settings = load_settings(_config_path(args), os.environ, require_secrets=not args.skip_secrets)
    print(f"ok: {settings.path}")
    for partner in settings.partners.partners:
        active = sum(1 for app in partner.apps if app.active)
        print(
            f"  partner {partner.name} ({settings.partners.files[partner.name]}): "
            f"{len(partner.apps)} apps, {active} active"
        )
    return EXIT_OK


_TOPIC_TYPES: dict[str, EventType] = {"installs": INSTALL, "in_app_events": IN_APP_EVENT}


def _explain(args: argparse.Namespace) -> int:
    settings = load_settings(_config_path(args), os.environ, require_secrets=False)
    try:
        text = sys.stdin.read() if args.event == "-" else Path(args.event).read_text("utf-8")
    except OSError as exc:
        print(f"cannot read {args.event}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        events = read_events(text)
    except NotJsonError as exc:
        print(f"{args.event}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not events:
        print(f"{args.event}: no event in it", file=sys.stderr)
        return EXIT_USAGE
    formats = settings.runtime.kafka.formats
    try:
        now_s = time.time() if args.now is None else parse_moment(args.now, time.time())
    except ValueError as exc:
        print(f"--now: {exc}", file=sys.stderr)
        return EXIT_USAGE
    topic_type = None if args.topic is None else _TOPIC_TYPES[args.topic]
    explanations = [
        explain(raw, settings.partners, formats, now_s, line, topic_type) for line, raw in events
    ]
    if args.json:
        print(json.dumps(explanations if len(explanations) > 1 else explanations[0], indent=2))
    else:
        print("\n".join(render_text(explanation) for explanation in explanations), end="")
    return EXIT_OK


def _postbacks(args: argparse.Namespace) -> int:
    import shutil  # noqa: PLC0415

    from kafka.errors import KafkaError  # noqa: PLC0415

    from dispatcher.kafka_clients import make_log_reader  # noqa: PLC0415
    from dispatcher.postback_log import read_log  # noqa: PLC0415
    from dispatcher.postbacks import DEFAULT_SINCE, Query, Tally, iso_z, search, writer_for  # noqa: PLC0415

    now_s = time.time()
    moments: dict[str, float | None] = {}
    for flag, text in (("--since", args.since or DEFAULT_SINCE), ("--until", args.until)):
        try:
            moments[flag] = None if text is None else parse_moment(text, now_s)
        except ValueError as exc:
            print(f"{flag}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    since_s, until_s = moments["--since"], moments["--until"]
    assert since_s is not None
    if until_s is not None and until_s < since_s:
        print(f"--until ({iso_z(until_s)}) is before --since ({iso_z(since_s)})", file=sys.stderr)
        return EXIT_USAGE
    settings = load_settings(_config_path(args), os.environ, require_secrets=False)
    topic = settings.runtime.kafka.postback_log_topic
    if topic is None:
        print(f"{settings.path}: kafka.postback_log_topic is null: the postback log is off, "
              "there is nothing to read", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    query = Query(args.event_id, args.appsflyer_id, args.app, args.partner, args.outcome,
                  since_s, until_s)  # fmt: skip
    tally = Tally()
    started = last_shown = time.monotonic()

    def progress(read: int) -> None:  # a line every 2 s once a read takes longer than that
        nonlocal last_shown
        now = time.monotonic()
        if now - last_shown >= 2:
            print(f"read {read} records ({tally.matched} matched)...", file=sys.stderr)
            last_shown = now

    write = writer_for(args.format, shutil.get_terminal_size((160, 24)).columns)
    consumer = make_log_reader(settings)
    try:
        records = read_log(consumer, topic, since_s, progress)
        # each Kafka record of the log holds a request's postbacks, one a line
        lines = ((r.timestamp, line) for r in records if r.value
                 for line in r.value.split(b"\n") if line)  # fmt: skip
        found = search(lines, query, args.limit, tally)
        write(found, sys.stdout)
        sys.stdout.flush()
    except LookupError as exc:  # no such topic
        print(f"{exc} (kafka.postback_log_topic of {settings.path})", file=sys.stderr)
        return EXIT_FAILURE
    except KafkaError as exc:
        print(f"cannot read the postback log {topic!r}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        consumer.close()
    if tally.invalid:
        print(f"skipped {tally.invalid} records that are not postback log records (not JSON of "
              "schemas/postback_log.py)", file=sys.stderr)  # fmt: skip
    if tally.limited:
        print(f"stopped at --limit {args.limit}", file=sys.stderr)
    if tally.matched:
        return EXIT_OK
    what = query.describe()
    until = "now" if until_s is None else iso_z(until_s)
    print(f"no postback{f' with {what}' if what else ''} in {topic} from {iso_z(since_s)} to "
          f"{until} ({tally.read} records read in {time.monotonic() - started:.1f}s)",
          file=sys.stderr)  # fmt: skip
    return EXIT_FAILURE


def _plan(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError  # noqa: PLC0415

    from dispatcher import plan as plans  # noqa: PLC0415
    from dispatcher.inputs import source_topics  # noqa: PLC0415
    from dispatcher.kafka_clients import make_log_reader  # noqa: PLC0415
    from dispatcher.postback_log import read_topics  # noqa: PLC0415
    from dispatcher.postbacks import iso_z  # noqa: PLC0415

    now_s = time.time()  # one moment for both configs: `too_old` is judged alike
    moments: dict[str, float] = {}
    for flag, text in (("--from", args.since), ("--to", args.until)):
        try:
            moments[flag] = parse_moment(text, now_s)
        except ValueError as exc:
            print(f"{flag}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    since_s, until_s = moments["--from"], moments["--to"]
    since, until = iso_z(since_s), iso_z(until_s)
    if until_s < since_s:
        print(f"--to ({until}) is before --from ({since})", file=sys.stderr)
        return EXIT_USAGE
    settings = load_settings(_config_path(args), os.environ, require_secrets=False)
    new = plans.load_new_partners(Path(args.new), os.environ)
    kafka = settings.runtime.kafka
    # as the worker reads them: each source topic's event type and decoder
    topics = {topic: (event_type, decoder.decode)
              for topic, (event_type, decoder) in source_topics(kafka).items()}  # fmt: skip
    planner = plans.Planner(settings.partners.partners, new.partners, now_s)
    plan = planner.plan
    interrupted = threading.Event()
    last_shown = time.monotonic()

    def progress(read: int) -> None:  # a line every 2 s once a read takes longer than that
        nonlocal last_shown
        now = time.monotonic()
        if now - last_shown >= 2:
            print(f"read {read} records ({plan.events} events decided, {plan.changed} decisions "
                  "change)...", file=sys.stderr)  # fmt: skip
            last_shown = now

    consumer = make_log_reader(settings)
    tune_garbage_collector()  # as the worker: many short-lived events
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: interrupted.set())
    try:
        records = read_topics(consumer, list(topics), since_s, until_s, progress,
                              stop=interrupted.is_set)  # fmt: skip
        plans.plan_records(planner, records, topics, int(since_s * 1000), int(until_s * 1000))
    except LookupError as exc:  # no such topic
        print(f"{exc} (kafka.topics of {settings.path})", file=sys.stderr)
        return EXIT_FAILURE
    except KafkaError as exc:
        print(f"cannot read {', '.join(topics)}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        signal.signal(signal.SIGINT, previous)
        consumer.close()
    if not plan.records:
        what = "interrupted before any record" if interrupted.is_set() else "no records"
        print(f"{what} in {', '.join(topics)} from {since} to {until}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        plans.write_json(plan, sys.stdout)
        print(plans.summary(plan, since, until), file=sys.stderr)
    else:
        plans.write_table(plan, sys.stdout)
        print(plans.summary(plan, since, until))
    if interrupted.is_set():
        got = "?" if plan.last_ms is None else iso_z(plan.last_ms / 1000)
        print(f"interrupted: read the records up to {got} of the range (to {until}); the "
              "counts cover those alone", file=sys.stderr)  # fmt: skip
        return EXIT_FAILURE
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# Parser


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default: INFO"
    )
    common.add_argument("--log-format", choices=["text", "json"], help="default: text")
    with_config = argparse.ArgumentParser(add_help=False)
    with_config.add_argument(
        "--config",
        metavar="FILE",
        help=f"dispatcher.yaml (default: ${CONFIG_PATH_ENV} or ./dispatcher.yaml)",
    )

    parser = argparse.ArgumentParser(
        prog="dispatcher",
        description="Postback dispatcher: delivers the postbacks partners are owed.",
        epilog="Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    check = commands.add_parser(
        "check-config",
        parents=[common, with_config],
        help="validate dispatcher.yaml and every partner file",
        description="Validate everything; exit 0, or exit 2 listing every error with its file, "
        "the path inside it and what is allowed.",
    )
    check.add_argument(
        "--skip-secrets",
        action="store_true",
        help="do not require the token environment variables to be set (e.g. in a CI pipeline)",
    )
    check.set_defaults(command=_check_config)

    explain_cmd = commands.add_parser(
        "explain",
        parents=[common, with_config],
        help="show the decision and payload for an event, without any network",
        description="For each partner app: the decision, the rule that made it, and the request "
        "that would be sent (token redacted). No Kafka, no network.",
    )
    explain_cmd.add_argument(
        "event", metavar="EVENT.json", help="a JSON event, JSON lines, or - for stdin"
    )
    explain_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    explain_cmd.add_argument(
        "--topic",
        choices=sorted(_TOPIC_TYPES),
        help="decide as the worker does for a record read from this topic (an event_type that "
        "disagrees with it is bad input); default: the topic the record belongs on",
    )
    explain_cmd.add_argument(
        "--now",
        metavar="T",
        help="decide at this moment (ISO 8601, or a duration ago: 2h, 3d); default: now. The "
        "event's age is judged against it",
    )
    explain_cmd.set_defaults(command=_explain)

    run = commands.add_parser(
        "run",
        parents=[common, with_config],
        help="the worker: consume, decide, deliver, commit",
        description="Consume the install and in-app topics, deliver owed postbacks, dead-letter "
        "what cannot be delivered, serve /metrics. SIGTERM/SIGINT stop gracefully (commit what "
        "is final, exit 0); SIGHUP reloads the partner files. With worker.processes above 1, "
        "that many worker processes in the consumer group, under one supervisor that serves "
        "their metrics and health together.",
    )
    # Set by the supervisor of `worker.processes` > 1 for each worker process it starts.
    run.add_argument("--process-index", type=int, help=argparse.SUPPRESS)
    run.add_argument("--port-fd", type=int, help=argparse.SUPPRESS)
    run.set_defaults(command=_run)

    health = commands.add_parser(
        "health",
        parents=[common, with_config],
        help="probe a running worker's /healthz (or /readyz): exit 0 or 1",
        description="Ask the worker running with this configuration whether it is alive (its "
        "main loop turns: /healthz) or, with --ready, ready (consuming: /readyz), on the "
        "metrics host and port of dispatcher.yaml and its DISPATCHER_ overrides; for container "
        "health checks. Reads no partner file. Exit 0 yes, 1 no or no answer, 2 config error.",
    )
    health.add_argument("--ready", action="store_true", help="ask /readyz instead of /healthz")
    health.add_argument("--timeout", type=float, default=4.0, metavar="S",
                        help="seconds to wait for the answer (default: 4)")  # fmt: skip
    health.set_defaults(command=_health)

    replay = commands.add_parser(
        "replay-dead-letters",
        parents=[common, with_config],
        help="re-publish dead letters to their source topic",
        description="Re-publish chosen dead letters to the topic they came from, where the "
        "worker picks them up again with the same event_id. A partner's dead letter is decided "
        "again for that partner only. Progress is remembered per reason (and partner) "
        "selection, so a second run continues instead of repeating. bad_input is replayed only "
        "when named with --reason.",
    )
    replay.add_argument(
        "--partner",
        choices=partner_names(),
        help="replay only this partner's dead letters (default: every partner's)",
    )
    replay.add_argument(
        "--reason",
        action="append",
        choices=list(DEAD_LETTER_REASONS),
        help="repeatable; default: " + ", ".join(DEFAULT_REPLAY_REASONS),
    )
    replay.add_argument("--limit", type=int, metavar="N", help="replay at most N records")
    replay.add_argument(
        "--dry-run", action="store_true", help="count what would be replayed; publish nothing"
    )
    replay.add_argument(
        "--from-beginning",
        action="store_true",
        help="ignore earlier replays of these reasons and start at the oldest record",
    )
    replay.set_defaults(command=_replay)

    replay_range_cmd = commands.add_parser(
        "replay",
        parents=[common, with_config],
        help="decide a time range of the source topics again and send what is owed",
        description="Read the source topics between two times (a consumer of no group: never "
        "the workers'), decide every record with today's config and today's time (too_old "
        "applies), and send what is owed through the worker's delivery (retries, pacing, held "
        "apps, dead letters, postback log), skipping what the postback log shows delivered to "
        "that partner (already_delivered): a second run sends nothing the first delivered. For "
        "a partner added late, a mapping fixed, an outage that outlived the retries. Ctrl-C "
        "stops reading; what is out finishes; it says where to start again. Exit 0 done, 1 no "
        "record in the range or stopped early, 2 usage or config error.",
        epilog="Times: ISO 8601 (2026-12-01T00:00:00Z) or a duration ago (2h, 3d).",
    )
    replay_range_cmd.add_argument("--from", dest="from_", required=True, metavar="T",
                                  help="the range's start (record time)")  # fmt: skip
    replay_range_cmd.add_argument("--to", required=True, metavar="T", help="the range's end")
    replay_range_cmd.add_argument(
        "--partner", choices=partner_names(), help="only this partner (default: every partner)"
    )
    replay_range_cmd.add_argument(
        "--app", metavar="A", help="only this app (the AppsFlyer app id, or the partner app)"
    )
    replay_range_cmd.add_argument(
        "--dry-run", action="store_true",
        help="count the decisions per partner app and reason; send nothing",
    )  # fmt: skip
    replay_range_cmd.set_defaults(command=_replay_range)

    postbacks = commands.add_parser(
        "postbacks",
        parents=[common, with_config],
        help="find postbacks in the postback log: was it sent, and what did the partner say",
        description="Read the postback log (kafka.postback_log_topic) from --since to its end "
        "and print the records that match every filter given: one per postback once final "
        "(when it was final, the outcome, the partner app, the event, the attempts, the HTTP "
        "status and partner code, the partner's request id and message). Exit 0 with a match, 1 "
        "with none (saying so on stderr, and over which time range), 2 on a usage or config "
        "error. Records that are not postback log records are skipped and counted on stderr.",
        epilog="Times: ISO 8601 (2026-12-01T00:00:00Z; UTC unless it names an offset) or a "
        "duration ago (30m, 2h, 3d). Example: dispatcher postbacks --config dispatcher.yaml "
        "--event-id 4a5c... --since 3d",
    )
    postbacks.add_argument("--event-id", metavar="ID", help="the event's event_id")
    postbacks.add_argument("--appsflyer-id", metavar="ID",
                           help="AppsFlyer's id of the app install (appsflyer_id)")  # fmt: skip
    postbacks.add_argument(
        "--app", metavar="A",
        help="the AppsFlyer app id (app_id) or the partner app the postback went to "
        "(destination, e.g. a TikTok App ID)",
    )  # fmt: skip
    postbacks.add_argument("--partner", choices=partner_names(), help="one partner's postbacks")
    postbacks.add_argument("--outcome", choices=LOGGED_OUTCOMES, help="one outcome")
    postbacks.add_argument(
        "--since", metavar="T",
        help="read the records written to the log from this moment (default: 24h, i.e. 24 "
        "hours ago)",
    )  # fmt: skip
    postbacks.add_argument("--until", metavar="T",
                           help="only records final (final_at) at or before this moment "
                           "(default: no bound)")  # fmt: skip
    postbacks.add_argument(
        "--format", choices=["table", "json", "csv"], default="table",
        help="table: one line per record, the message cut to fit the terminal (default); json: "
        "each record as stored, one per line; csv: a header and the flat fields (source as "
        "source_topic/source_partition/source_offset, payload as JSON text)",
    )  # fmt: skip
    postbacks.add_argument("--limit", type=_positive, metavar="N",
                           help="stop after N matching records")  # fmt: skip
    postbacks.set_defaults(command=_postbacks)

    plan_cmd = commands.add_parser(
        "plan",
        parents=[common, with_config],
        help="what a config change would do, on recorded traffic, before it ships",
        description="Decide the events of the source topics recorded between --from and --to "
        "(the time Kafka recorded them) under the running config (--config) and under the new "
        "one (--with), at one moment for both, and print per partner, partner app and event "
        "the decisions that change (from skip:outside_window to send, ...) with their counts "
        "and up to five event ids each, then what stays the same in one line. A partner with a "
        "file in one config alone is skip:not_configured on the other side; a send to another "
        "partner app is send -> send. Sends nothing and writes nothing: it only reads Kafka. "
        "Ctrl-C stops the read and reports what was decided so far (exit 1). Exit 0; 1 with no "
        "record in the range, a topic missing, the broker unreachable or an interrupted read; "
        "2 on a usage or config error (errors of the new files as check-config prints them).",
        epilog="Times: ISO 8601 (2026-12-01T00:00:00Z; UTC unless it names an offset) or a "
        "duration ago (30m, 2h, 3d). Example: dispatcher plan --config dispatcher.yaml --with "
        "new/partners --from 3d --to 0m",
    )
    plan_cmd.add_argument(
        "--with", dest="new", required=True, metavar="NEW",
        help="the new config: a directory of partner files, or a dispatcher.yaml (the files of "
        "its partners_dir; its Kafka settings and topics are not used). Tokens need not be set",
    )  # fmt: skip
    plan_cmd.add_argument("--from", dest="since", required=True, metavar="T",
                          help="the first moment of the recorded traffic")  # fmt: skip
    plan_cmd.add_argument("--to", dest="until", required=True, metavar="T",
                          help="the last moment of the recorded traffic")  # fmt: skip
    plan_cmd.add_argument(
        "--json", action="store_true",
        help="one JSON object per changed cell, one a line: partner, destination, event, from, "
        "to, count, examples (the unchanged line goes to stderr)",
    )  # fmt: skip
    plan_cmd.set_defaults(command=_plan)

    topics = commands.add_parser(
        "topics",
        parents=[common],
        help="manage the topics the worker reads and writes",
        description="`topics create`: create the topics of dispatcher.yaml on your Kafka.",
    )
    topic_commands = topics.add_subparsers(title="topic commands", metavar="ACTION")
    create = topic_commands.add_parser(
        "create",
        parents=[common, with_config],
        help="create the source topics and the dead-letter topic when they do not exist",
        description="Create kafka.topics.installs and kafka.topics.in_app_events with "
        "--partitions each, and kafka.dead_letter_topic with one partition, unless they exist "
        "(then they are left as they are). Prints what it did for each; safe to run again.",
    )
    create.add_argument("--partitions", type=_positive, default=6,
                        help="partitions of each source topic: the most workers that can share "
                        "the load (default: 6)")  # fmt: skip
    create.add_argument("--replication-factor", type=_positive, default=1,
                        help="copies of each partition (default: 1; use 3 on a production "
                        "cluster)")  # fmt: skip
    create.set_defaults(command=_topics_create)

    link = commands.add_parser(
        "link",
        parents=[common, with_config],
        help="print an app's AppsFlyer attribution links for a partner",
        description="The click-through and impression links for one app: pid, the partner's "
        "parameters and macros, and the lookbacks (from the app's config unless a flag says "
        "otherwise). Without --partner, one pair per partner file that configures the app.",
    )
    link.add_argument("--app", required=True, metavar="APP_ID", help="the app's store id")
    link.add_argument("--partner", metavar="P", help="one partner (default: every partner "
                      "whose file configures the app)")  # fmt: skip
    link.add_argument("--media-source", metavar="M",
                      help="pid (default: the partner's first media source)")  # fmt: skip
    link.add_argument("--click-lookback", metavar="D", help="1h..23h or 1d..30d")
    link.add_argument("--view-through-lookback", metavar="D", help="1h..23h or 1d")
    link.add_argument(
        "--param", action="append", metavar="KEY=VALUE",
        help="add or override a parameter (repeatable), e.g. af_sub1=spring",
    )  # fmt: skip
    link.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    link.set_defaults(command=_link)

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="the whole pipeline locally: broker, partner sandbox, worker, sample events",
        description="Start a local Kafka-compatible broker, a local partner sandbox (TikTok and "
        "Ocean Engine) and the worker, produce a realistic sample, show progress and a summary. "
        "Needs nothing set up.",
    )
    demo.add_argument("--events", type=_positive, default=2000, help="sample size (default: 2000)")
    demo.add_argument("--keep-running", action="store_true", help="keep everything up until Ctrl-C")
    demo.add_argument(
        "--metrics-port", type=int, default=9108, help="worker metrics port (default: 9108)"
    )
    demo.set_defaults(command=_demo)

    broker_cmd = commands.add_parser(
        "broker",
        parents=[common],
        help="a local Kafka-compatible broker (Tansu, memory storage), for local runs",
        description="Start the local Kafka-compatible broker the demo and the tests use (Tansu, "
        "shipped in the `local` extra), on 127.0.0.1, until Ctrl-C or SIGTERM. Its data lives in "
        "memory. Not for production.",
    )
    broker_cmd.add_argument("--port", type=int, default=9092, help="default: 9092")
    broker_cmd.add_argument(
        "--topic", action="append", metavar="NAME", help="create this topic (repeatable)"
    )
    broker_cmd.add_argument(
        "--partitions", type=_positive, default=6, help="partitions of each --topic (default: 6)"
    )
    broker_cmd.add_argument("--log", type=Path, metavar="FILE", help="the broker's own log")
    broker_cmd.set_defaults(command=_broker)

    sandbox = commands.add_parser(
        "sandbox",
        parents=[common],
        help="a local stand-in for TikTok's Events API and Ocean Engine's conversion API, with "
        "fault injection (for local runs)",
        description="Serve both partners' contracts on --port (Ocean Engine on /api/v2/conversion, "
        "TikTok on any other path), and a control API (faults, received events) on "
        "--control-port. Not for production.",
    )
    sandbox.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8080, help="API port (default: 8080)")
    sandbox.add_argument(
        "--control-port", type=int, default=8081, help="control port (default: 8081)"
    )
    sandbox.add_argument(
        "--token-env",
        metavar="VAR",
        help="TikTok: require the Access-Token held by this environment variable (default: "
        "accept any)",
    )
    sandbox.add_argument(
        "--no-payloads", action="store_true", help="keep only event ids (long benchmarks)"
    )
    sandbox.set_defaults(command=_sandbox)
    return parser
