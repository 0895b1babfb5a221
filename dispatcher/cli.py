"""The `dispatcher` command line (SPEC §7). Exit codes: 0 ok, 1 runtime failure, 2 usage or config.

This is the entry point: the only place that reads the environment and the configuration files.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from dispatcher import __version__
from dispatcher.config_loader import CONFIG_PATH_ENV, load_settings
from dispatcher.errors import ConfigError, DispatcherError
from dispatcher.explain import explain, read_events, render_text
from dispatcher.logs import configure_logging

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


def _check_config(args: argparse.Namespace) -> int:
    settings = load_settings(_config_path(args), os.environ, require_secrets=not args.skip_secrets)
    print(f"ok: {settings.path}")
    for partner in settings.partners.partners:
        active = sum(1 for app in partner.apps if app.active)
        print(
            f"  partner {partner.partner} ({settings.partners.files[partner.partner]}): "
            f"{len(partner.apps)} apps, {active} active"
        )
    return EXIT_OK


def _explain(args: argparse.Namespace) -> int:
    settings = load_settings(_config_path(args), os.environ, require_secrets=False)
    try:
        text = sys.stdin.read() if args.event == "-" else Path(args.event).read_text("utf-8")
    except OSError as exc:
        print(f"cannot read {args.event}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    events = list(read_events(text))
    if not events:
        print(f"{args.event}: no event in it", file=sys.stderr)
        return EXIT_USAGE
    explanations = [explain(raw, settings.partners) for raw in events]
    if args.json:
        print(json.dumps(explanations if len(explanations) > 1 else explanations[0], indent=2))
    else:
        print("\n".join(render_text(explanation) for explanation in explanations), end="")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# Parser


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
    explain_cmd.set_defaults(command=_explain)
    return parser
