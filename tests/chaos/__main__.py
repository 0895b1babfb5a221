"""`python -m tests.chaos [--profile short|full] [--only NAME ...] [--write]`

Runs the chaos scenarios against a broker and a sandbox it starts itself, prints one row per
scenario (its bound, whether it held, its figures), writes the figures as JSON, and with `--write`
merges the figures into `tests/chaos/results/PROFILE.json` (scenarios not run keep their last
figures) and puts that profile's table into docs/reliability.md. Exit 1 when a scenario
failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dispatcher.devtools.broker import LocalBroker
from tests.chaos.scenarios import PROFILES, SCENARIOS, ChaosEnv, Result
from tests.pipeline import REPO

RELIABILITY = REPO / "docs" / "reliability.md"
RESULTS = Path(__file__).resolve().parent / "results"


def figures_text(figures: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in figures.items())


def entry(name: str, result: Result) -> dict[str, Any]:
    """One scenario's result as JSON."""
    return {"scenario": name, "title": result.name, "bound": result.bound, "held": result.ok,
            "failures": result.failures, "figures": result.figures,
            "seconds": round(result.seconds, 1),
            "ran_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}  # fmt: skip


def table(entries: list[dict[str, Any]]) -> str:
    """A Markdown table: scenario, bound, held?, figures, time, when."""
    rows = [
        "| Scenario | Bound | Held | Figures of the run | Time | Run at |",
        "|---|---|---|---|---|---|",
    ]
    for e in entries:
        held = "yes" if e["held"] else "**NO**: " + "; ".join(e["failures"])
        rows.append(f"| `{e['scenario']}`: {e['title']} | {e['bound']} | {held} "
                    f"| {figures_text(e['figures'])} | {e['seconds']:.0f} s | {e['ran_at']} |")  # fmt: skip
    return "\n".join(rows)


def write_reliability(profile: str, entries: list[dict[str, Any]]) -> None:
    """Merge these results into `results/PROFILE.json` (a scenario not run keeps its last
    figures) and put the table between `<!-- chaos:PROFILE:begin -->` and `...:end -->`."""
    stored = RESULTS / f"{profile}.json"
    merged = {e["scenario"]: e for e in json.loads(stored.read_text())} if stored.exists() else {}
    merged |= {e["scenario"]: e for e in entries}
    ordered = [merged[name] for name in SCENARIOS if name in merged]
    RESULTS.mkdir(exist_ok=True)
    stored.write_text(json.dumps(ordered, indent=2, default=str) + "\n")
    text = RELIABILITY.read_text()
    begin, end = f"<!-- chaos:{profile}:begin -->", f"<!-- chaos:{profile}:end -->"
    if begin not in text or end not in text:
        raise SystemExit(f"{RELIABILITY}: markers {begin} / {end} are missing")
    block = (
        f"{begin}\nCommand: `python -m tests.chaos --profile {profile} --write`; Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs.\n\n{table(ordered)}\n{end}"
    )
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    RELIABILITY.write_text(pattern.sub(lambda _: block, text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), metavar="NAME",
                        help=f"run only these scenarios: {', '.join(SCENARIOS)}")  # fmt: skip
    parser.add_argument("--json", type=Path, help="where to write the figures (default: print)")
    parser.add_argument("--write", action="store_true", help="update docs/reliability.md's table")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    names = args.only or list(SCENARIOS)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="chaos-") as directory:
        workdir = Path(directory)
        broker = LocalBroker(log_path=workdir / "tansu.log").start()
        env = ChaosEnv(broker, workdir)
        try:
            for name in names:
                print(f"{name} ...", end="", flush=True, file=sys.stderr)
                started = time.monotonic()
                try:
                    result = SCENARIOS[name](env, profile)
                except Exception as exc:  # a scenario that blew up is a failed scenario
                    result = Result(name, "-", failures=[f"{type(exc).__name__}: {exc}"])
                    result.seconds = time.monotonic() - started
                results.append(result)
                verdict = "held" if result.ok else "FAILED: " + "; ".join(result.failures)
                print(f" {verdict} ({result.seconds:.0f} s)", file=sys.stderr)
        finally:
            env.close()
            broker.stop()
    entries = [entry(name, r) for name, r in zip(names, results, strict=True)]
    print(table(entries))
    if args.json:
        document = {"profile": args.profile, "results": entries}
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
    if args.write:
        write_reliability(args.profile, entries)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
