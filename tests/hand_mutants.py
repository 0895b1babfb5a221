"""`python -m tests.hand_mutants [NAME ...]`: the mutants mutmut does not make, made by hand.

mutmut 3 mutates code inside functions only: module constants, tables and pydantic field settings
(`to_lower=True`, a default, a bound) are never changed. Each mutant below replaces one text of
one file, exactly once, in a copy of the packages and tests (the working tree is not touched), and
runs the tests that should catch it. Exit 1 when one survives or its text is no longer in its file
(the code moved on: rewrite the mutant).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent
COPIED = ("dispatcher", "schemas", "tests", "config", "pyproject.toml")


class HandMutant(NamedTuple):
    """`old` becomes `new` in `path`; one of `tests` must fail."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


APPSFLYER = "dispatcher/inputs/appsflyer.py"
TIKTOK_TESTS = ("tests/test_tiktok.py", "tests/test_rules.py")
OCEAN_TESTS = ("tests/test_oceanengine.py",)
DECODER_TESTS = (
    "tests/test_appsflyer.py",
    "tests/test_appsflyer_readers.py",
    "tests/test_rules.py",
)

MUTANTS = (
    HandMutant("touch type and platform not lower-cased", APPSFLYER,
               "StringConstraints(strip_whitespace=True, to_lower=True)",
               "StringConstraints(strip_whitespace=True)", DECODER_TESTS),
    HandMutant("touch type and platform not stripped", APPSFLYER,
               "StringConstraints(strip_whitespace=True, to_lower=True)",
               "StringConstraints(to_lower=True)", DECODER_TESTS),
    HandMutant("a blank required identifier accepted", APPSFLYER,
               'StringConstraints(pattern=r"\\S")', "StringConstraints()", DECODER_TESTS),
    HandMutant("numbers not read as text", APPSFLYER,
               "coerce_numbers_to_str=True", "coerce_numbers_to_str=False", DECODER_TESTS),
    HandMutant("an infinite event_revenue accepted", APPSFLYER,
               "Field(allow_inf_nan=False)", "Field(allow_inf_nan=True)", DECODER_TESTS),
    HandMutant("'revenue' not a revenue key", APPSFLYER,
               '{"af_revenue", "revenue", "event_revenue"}', '{"af_revenue", "event_revenue"}',
               DECODER_TESTS),
    HandMutant("af_quantity under another neutral name", APPSFLYER,
               '"af_quantity": "quantity"', '"af_quantity": "qty"', DECODER_TESTS),
    HandMutant("re-attribution not an installs-topic event type", APPSFLYER,
               '    "re-engagement",\n    "re-attribution",\n)', '    "re-engagement",\n)',
               DECODER_TESTS),
    HandMutant("six problems named instead of five", APPSFLYER,
               "_MAX_ERRORS_IN_DETAIL = 5", "_MAX_ERRORS_IN_DETAIL = 6", DECODER_TESTS),
    HandMutant("the fast reader trims a vertical tab no more", APPSFLYER,
               '_TRIMMED = " \\t\\n\\x0b\\x0c\\r"', '_TRIMMED = " \\t\\n\\x0c\\r"', DECODER_TESTS),
    HandMutant("the fast reader takes one level of nesting too many", APPSFLYER,
               "_MAX_NESTING = 200", "_MAX_NESTING = 201", DECODER_TESTS),
    HandMutant("the fast reader takes one digit too many", APPSFLYER,
               "_MAX_DIGITS = 4300", "_MAX_DIGITS = 4301", DECODER_TESTS),
    HandMutant("reinstall read as a first install", APPSFLYER,
               '"reinstall": Conversion.REINSTALL', '"reinstall": Conversion.INSTALL',
               DECODER_TESTS),
    HandMutant("'organic' not organic", "dispatcher/attribution.py",
               'frozenset({"", "organic"})', 'frozenset({""})', ("tests/test_rules.py",)),
    HandMutant("'restricted' not named", "dispatcher/attribution.py",
               'RESTRICTED_MEDIA_SOURCE = "restricted"', 'RESTRICTED_MEDIA_SOURCE = "restrict"',
               ("tests/test_rules.py",)),
    HandMutant("TikTok's num_items under AppsFlyer's name", "dispatcher/partners/tiktok/adapter.py",
               'properties["num_items"] = num_items', 'properties["quantity"] = num_items',
               TIKTOK_TESTS),
    HandMutant("TikTok's iOS app id sent with its prefix", "dispatcher/partners/tiktok/adapter.py",
               "return app_id[2:]", "return app_id", TIKTOK_TESTS),
    HandMutant("TikTok's click id read from another parameter",
               "dispatcher/partners/tiktok/adapter.py", 'CLICK_ID_PARAMETER = "clickid"',
               'CLICK_ID_PARAMETER = "click_id"', TIKTOK_TESTS),
    HandMutant("TikTok's revenue property renamed", "dispatcher/partners/tiktok/adapter.py",
               'REVENUE_PROPERTY = "value"', 'REVENUE_PROPERTY = "revenue"', TIKTOK_TESTS),
    HandMutant("a TikTok event sent under another name", "dispatcher/partners/tiktok/wire.py",
               '"Add_to_cart": "AddToCart"', '"Add_to_cart": "AddtoCart"', TIKTOK_TESTS),
    HandMutant("TikTok's install event renamed", "dispatcher/partners/tiktok/wire.py",
               'INSTALL_EVENT = "InstallApp"', 'INSTALL_EVENT = "Install"', TIKTOK_TESTS),
    HandMutant("TikTok's partial success code", "dispatcher/partners/tiktok/codes.py",
               "CODE_PARTIAL_OK = 20001", "CODE_PARTIAL_OK = 20002", TIKTOK_TESTS),
    HandMutant("TikTok's frequency limit taken as transient", "dispatcher/partners/tiktok/codes.py",
               "40132: _TH,", "40132: _TR,", TIKTOK_TESTS),
    HandMutant("TikTok's too-many-requests taken as transient", "dispatcher/partners/tiktok/codes.py",
               "61000: _TH,", "61000: _TR,", TIKTOK_TESTS),
    HandMutant("TikTok's invalid token taken as a bad event", "dispatcher/partners/tiktok/codes.py",
               "40105: _S,", "40105: _B,", TIKTOK_TESTS),
    HandMutant("TikTok's parameter error taken as setup", "dispatcher/partners/tiktok/codes.py",
               "40002: _B,", "40002: _S,", TIKTOK_TESTS),
    HandMutant("TikTok's first server error code", "dispatcher/partners/tiktok/codes.py",
               "FIRST_SERVER_ERROR_CODE = 50000", "FIRST_SERVER_ERROR_CODE = 50001",
               TIKTOK_TESTS),
    HandMutant("TikTok's request limit", "dispatcher/partners/tiktok/wire.py",
               "MAX_EVENTS_PER_REQUEST = 1000", "MAX_EVENTS_PER_REQUEST = 1001",
               ("tests/test_config.py", "tests/test_tiktok.py")),
    HandMutant("Ocean Engine's impression match type", "dispatcher/partners/oceanengine/wire.py",
               "MATCH_TYPE_IMPRESSION = 1", "MATCH_TYPE_IMPRESSION = 2", OCEAN_TESTS),
    HandMutant("Ocean Engine's revenue currency", "dispatcher/partners/oceanengine/wire.py",
               'REVENUE_CURRENCY = "CNY"', 'REVENUE_CURRENCY = "RMB"', OCEAN_TESTS),
    HandMutant("Ocean Engine's install event", "dispatcher/partners/oceanengine/wire.py",
               'INSTALL_EVENT = "active"', 'INSTALL_EVENT = "activate"', OCEAN_TESTS),
    HandMutant("Ocean Engine's code 128 not delivered", "dispatcher/partners/oceanengine/wire.py",
               "CODE_ACCEPTED_128 = 128", "CODE_ACCEPTED_128 = 129", OCEAN_TESTS),
    HandMutant("yuan to fen by ten", "dispatcher/partners/oceanengine/adapter.py",
               "_FEN = Decimal(100)", "_FEN = Decimal(10)", OCEAN_TESTS),
    HandMutant("Ocean Engine batches two", "dispatcher/partners/oceanengine/config.py",
               "Field(ge=1, le=1)] = 1", "Field(ge=1, le=2)] = 1", OCEAN_TESTS),
    HandMutant("the all-zero device id sent", "dispatcher/partners/base.py",
               '_ZERO_DEVICE_ID = "00000000-0000-0000-0000-000000000000"',
               '_ZERO_DEVICE_ID = "0"', (*TIKTOK_TESTS, *OCEAN_TESTS, "tests/test_signals.py")),
    HandMutant("TikTok's age limit a day longer", "dispatcher/partners/tiktok/config.py",
               "max_event_age: MaxEventAge = timedelta(days=28)",
               "max_event_age: MaxEventAge = timedelta(days=29)", ("tests/test_signals.py",)),
    HandMutant("is_lat read as no signal", APPSFLYER,
               "record.is_lat is True,  # limit_ad_tracking", "False,  # limit_ad_tracking",
               ("tests/test_signals.py",)),
    HandMutant("af_authorized not authorized", APPSFLYER,
               '"af_authorized": Att.AUTHORIZED', '"af_authorized": Att.UNKNOWN',
               ("tests/test_signals.py",)),
    HandMutant("the commit timeout", "dispatcher/offsets.py",
               "ASYNC_COMMIT_TIMEOUT_S = 15.0", "ASYNC_COMMIT_TIMEOUT_S = 16.0",
               ("tests/test_offsets.py",)),
    HandMutant("days written as minutes", "schemas/durations.py",
               '"d": timedelta(days=1)', '"d": timedelta(minutes=1)', ("tests/test_config.py",)),
    HandMutant("a duration with a fraction", "schemas/durations.py",
               r'r"(?P<amount>\d+)\s*(?P<unit>[mhd])"', r'r"(?P<amount>[\d.]+)\s*(?P<unit>[mhd])"',
               ("tests/test_config.py",)),
    HandMutant("in-app window default", "schemas/config.py",
               "window: Window = timedelta(days=180)", "window: Window = timedelta(days=30)",
               ("tests/test_config.py", "tests/test_rules.py")),
    HandMutant("click lookback default", "schemas/config.py",
               "click_lookback: ClickLookback = timedelta(days=7)",
               "click_lookback: ClickLookback = timedelta(days=30)",
               ("tests/test_config.py", "tests/test_rules.py")),
)  # fmt: skip


class Verdict(NamedTuple):
    mutant: HandMutant
    outcome: str  # caught, SURVIVED, or STALE (its text is not in the file once)
    seconds: float


def try_mutant(mutant: HandMutant) -> Verdict:
    """Apply the mutant in a copy of the project and run its tests there."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hand-mutant-") as tmp:
        root = Path(tmp)
        for name in COPIED:
            source = REPO / name
            if source.is_dir():
                shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, root / name)
        target = root / mutant.path
        text = target.read_text()
        if text.count(mutant.old) != 1:
            return Verdict(mutant, "STALE", time.monotonic() - started)
        target.write_text(text.replace(mutant.old, mutant.new))
        # The copy comes first on the path, ahead of the editable install of the working tree.
        env = os.environ | {"PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
             "--hypothesis-profile=mutation", "-m", "not broker and not prometheus and not chaos",
             *mutant.tests],
            cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
    outcome = "caught" if result.returncode == 1 else "SURVIVED"
    if result.returncode not in (0, 1):
        outcome = f"ERROR (pytest exit {result.returncode})"
    return Verdict(mutant, outcome, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.hand_mutants")
    parser.add_argument("names", nargs="*", help="only the mutants whose name contains these")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.names or any(n in m.name for n in args.names)]
    print("| hand-written mutant | file | change | result |")
    print("|---|---|---|---|")
    verdicts = []
    for mutant in chosen:
        verdict = try_mutant(mutant)
        verdicts.append(verdict)
        change = f"`{mutant.old.strip()}` → `{mutant.new.strip()}`".replace("\n", " ")
        print(f"| {mutant.name} | `{mutant.path}` | {change} | {verdict.outcome} |", flush=True)
    caught = sum(1 for v in verdicts if v.outcome == "caught")
    print(f"\n{caught} of {len(verdicts)} hand-written mutants caught")
    return 0 if caught == len(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
