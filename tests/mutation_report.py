"""`python -m tests.mutation_report [--fail-under 90] [--survivors] [--json FILE] [--names]`

The score of the last mutation run (`scripts/mutation`), per module, as a Markdown table; then the
survivors that `tests/EQUIVALENT_MUTANTS.md` does not list (each needs a test or a line there) and
the listed ones that no longer survive (killed now, or renamed by a change to their function).
Reads what mutmut left in `mutants/` (one `.meta` file per mutated module). Exit 1 when the total
score is under `--fail-under` or a run was not finished.

Score: mutants caught (killed, or timed out: a mutant that hangs a test is caught too) over all
mutants of the module, survivors and mutants no test reaches included.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mutmut.stats import status_by_exit_code

REPO = Path(__file__).resolve().parent.parent
MUTANTS = REPO / "mutants"
EQUIVALENT = Path(__file__).resolve().parent / "EQUIVALENT_MUTANTS.md"
CAUGHT = frozenset({"killed", "timeout", "segfault"})
# A mutant's name as mutmut prints it, e.g. `dispatcher.ratelimit.xǁRequestPacerǁwindow__mutmut_7`
_NAME = re.compile(r"`([\w.ǁ]+__mutmut_\d+)`")


@dataclass
class ModuleScore:
    """How the mutants of one module fared."""

    module: str
    statuses: dict[str, str] = field(default_factory=dict)  # mutant name -> mutmut's status

    def count(self, *statuses: str) -> int:
        return sum(1 for status in self.statuses.values() if status in statuses)

    @property
    def mutants(self) -> int:
        return len(self.statuses)

    @property
    def caught(self) -> int:
        return self.count(*CAUGHT)

    @property
    def survivors(self) -> list[str]:
        return sorted(name for name, status in self.statuses.items() if status not in CAUGHT)


def module_of(meta: Path, mutants: Path) -> str:
    """`mutants/dispatcher/rules.py.meta` -> `dispatcher/rules.py`."""
    return meta.relative_to(mutants).as_posix().removesuffix(".meta")


def read_scores(mutants: Path) -> list[ModuleScore]:
    """Every mutated module's mutants and their status, in path order."""
    scores = []
    for meta in sorted(mutants.rglob("*.py.meta")):
        exit_codes: Mapping[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        if exit_codes:
            statuses = {name: status_by_exit_code[code] for name, code in exit_codes.items()}
            scores.append(ModuleScore(module_of(meta, mutants), statuses))
    return scores


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def table(scores: Iterable[ModuleScore]) -> str:
    """The Markdown table: one row per module, then the total."""
    rows = [
        "| module | mutants | caught | survived | no test | score |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    total = ModuleScore("**total**")
    for score in scores:
        total.statuses.update(score.statuses)
        rows.append(_row(score))
    rows.append(_row(total))
    return "\n".join(rows)


def _row(score: ModuleScore) -> str:
    module = score.module if score.module.startswith("*") else f"`{score.module}`"
    return (
        f"| {module} | {score.mutants} | {score.caught} | {score.count('survived')} "
        f"| {score.count('no tests')} | {percent(score.caught, score.mutants)} |"
    )


def listed_equivalents(text: str) -> set[str]:
    """The mutant names that `EQUIVALENT_MUTANTS.md` lists (in backquotes)."""
    return set(_NAME.findall(text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation_report")
    parser.add_argument("--mutants", type=Path, default=MUTANTS, help="mutmut's directory")
    parser.add_argument("--equivalent", type=Path, default=EQUIVALENT, help="the survivors' list")
    parser.add_argument("--fail-under", type=float, default=90.0, help="least total score, %%")
    parser.add_argument("--survivors", action="store_true", help="list every survivor")
    parser.add_argument("--json", type=Path, help="write the per-module counts here as JSON")
    parser.add_argument("--names", action="store_true",
                        help="only the names of the survivors EQUIVALENT_MUTANTS.md does not list")  # fmt: skip
    args = parser.parse_args(argv)

    scores = read_scores(args.mutants)
    equivalent: Path = args.equivalent
    listed = listed_equivalents(equivalent.read_text()) if equivalent.exists() else set()
    if args.names:
        for score in scores:
            for name in score.survivors:
                if score.statuses[name] != "not checked" and name not in listed:
                    print(name)
        return 0
    if not scores:
        print(f"no mutation results under {args.mutants}: run scripts/mutation first")
        return 1
    print(table(scores))
    statuses = {name: status for score in scores for name, status in score.statuses.items()}
    survivors = sorted(name for name, status in statuses.items() if status not in CAUGHT)
    unchecked = [name for name, status in statuses.items() if status == "not checked"]
    unexplained = [name for name in survivors if name not in listed]
    stale = sorted(name for name in listed if statuses.get(name) in CAUGHT | {None})
    print()
    print(f"{len(survivors)} survivors, {len(survivors) - len(unexplained)} of them listed in "
          f"{equivalent.name}")  # fmt: skip
    for name in survivors if args.survivors else unexplained:
        print(f"  {'listed  ' if name in listed else 'UNLISTED'} {name}  ({statuses[name]})")
    if stale:
        print(f"listed in {equivalent.name} but caught now, or renamed (a changed function's "
              f"mutants are numbered anew):")  # fmt: skip
        for name in stale:
            print(f"  {name}")
    if unexplained:
        print("see one with: .venv/bin/mutmut show NAME")
    if args.json:
        counts = {s.module: {"mutants": s.mutants, "caught": s.caught,
                             "survived": s.count("survived"), "no_tests": s.count("no tests")}
                  for s in scores}  # fmt: skip
        args.json.write_text(json.dumps(counts, indent=2) + "\n")
    caught = sum(score.caught for score in scores)
    if unchecked:
        print(f"{len(unchecked)} mutants not checked: the run did not finish")
        return 1
    if 100 * caught / len(statuses) < args.fail_under:
        print(f"total score under {args.fail_under:g} %")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
