"""The mutation report (`scripts/mutation`'s table): scores per module from mutmut's results, and
the survivors that EQUIVALENT_MUTANTS.md does not explain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import mutation_report
from tests.mutation_report import listed_equivalents, read_scores, table

# mutmut's exit codes: 1 killed, 0 survived, 33 no tests, 36 timeout, None not checked yet
RULES: dict[str, int | None] = {"dispatcher.rules.x_decide__mutmut_1": 1, "dispatcher.rules.x_decide__mutmut_2": 0,
         "dispatcher.rules.x_decide__mutmut_3": 36, "dispatcher.rules.x_decide__mutmut_4": 33}  # fmt: skip
PACER: dict[str, int | None] = {"dispatcher.ratelimit.xǁRequestPacerǁwindow__mutmut_1": 1}


def write_results(mutants: Path, results: dict[str, dict[str, int | None]]) -> Path:
    for module, exit_codes in results.items():
        meta = mutants / f"{module}.meta"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"exit_code_by_key": exit_codes}))
    return mutants


def test_the_table_counts_timeouts_as_caught_and_scores_over_every_mutant(tmp_path: Path) -> None:
    mutants = write_results(tmp_path, {"dispatcher/rules.py": RULES,
                                       "dispatcher/ratelimit.py": PACER,
                                       "dispatcher/partners/tiktok/wire.py": {}})  # fmt: skip
    assert table(read_scores(mutants)) == "\n".join([
        "| module | mutants | caught | survived | no test | score |",
        "|---|---:|---:|---:|---:|---:|",
        "| `dispatcher/ratelimit.py` | 1 | 1 | 0 | 0 | 100.0 % |",
        "| `dispatcher/rules.py` | 4 | 2 | 1 | 1 | 50.0 % |",
        "| **total** | 5 | 3 | 1 | 1 | 60.0 % |",
    ])  # fmt: skip


def test_equivalent_mutants_are_the_names_in_backquotes() -> None:
    text = (
        "| `dispatcher.ratelimit.xǁRequestPacerǁwindow__mutmut_7` | rate*window |\n"
        "- `schemas.durations.x_format_duration__mutmut_3`: why\n"
        "`dispatcher.rules` alone is not a mutant\n"
    )
    assert listed_equivalents(text) == {
        "dispatcher.ratelimit.xǁRequestPacerǁwindow__mutmut_7",
        "schemas.durations.x_format_duration__mutmut_3",
    }


@pytest.mark.parametrize(
    ("results", "fail_under", "exit_code"),
    [
        pytest.param({"dispatcher/ratelimit.py": PACER}, 90, 0, id="all-caught"),
        pytest.param({"dispatcher/rules.py": RULES}, 90, 1, id="under-the-bar"),
        pytest.param({"dispatcher/rules.py": RULES}, 50, 0, id="a-lower-bar"),
        pytest.param({"dispatcher/ratelimit.py": PACER | {"dispatcher.ratelimit.x_f__mutmut_1": None}},
                     0, 1, id="an-unfinished-run"),
        pytest.param({}, 0, 1, id="no-run-yet"),
    ],
)  # fmt: skip
def test_the_report_fails_under_the_bar_or_on_an_unfinished_run(
    tmp_path: Path, results: dict[str, dict[str, int | None]], fail_under: float, exit_code: int
) -> None:
    mutants = write_results(tmp_path, results)
    argv = ["--mutants", str(mutants), "--fail-under", str(fail_under),
            "--equivalent", str(tmp_path / "none.md")]  # fmt: skip
    assert mutation_report.main(argv) == exit_code


def test_unlisted_survivors_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mutants = write_results(tmp_path, {"dispatcher/rules.py": RULES})
    equivalent = tmp_path / "EQUIVALENT_MUTANTS.md"
    equivalent.write_text(
        "- `dispatcher.rules.x_decide__mutmut_4`: why\n- `dispatcher.rules.x_decide__mutmut_1`: old\n"
    )
    mutation_report.main(
        ["--mutants", str(mutants), "--fail-under", "0", "--equivalent", str(equivalent)]
    )
    out = capsys.readouterr().out
    assert "UNLISTED dispatcher.rules.x_decide__mutmut_2  (survived)" in out
    assert "listed   dispatcher.rules.x_decide__mutmut_4  (no tests)" not in out  # listed: quiet
    assert "2 survivors, 1 of them listed in EQUIVALENT_MUTANTS.md" in out
    assert "caught now, or renamed" in out  # x_decide__mutmut_1 is listed but killed
    assert "x_decide__mutmut_3 " not in out  # timed out


def test_names_lists_the_survivors_to_test_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unchecked: dict[str, int | None] = {"dispatcher.ratelimit.x_f__mutmut_1": None}
    mutants = write_results(tmp_path, {"dispatcher/rules.py": RULES,
                                       "dispatcher/ratelimit.py": PACER | unchecked})  # fmt: skip
    equivalent = tmp_path / "EQUIVALENT_MUTANTS.md"
    equivalent.write_text("`dispatcher.rules.x_decide__mutmut_4`: equivalent\n")
    argv = ["--mutants", str(mutants), "--names", "--equivalent", str(equivalent)]
    assert mutation_report.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == ["dispatcher.rules.x_decide__mutmut_2"]
