"""Attribution links (`dispatcher link`): the parameters and macros each partner
documents, lookbacks as AppsFlyer accepts them, every error, and the round trip from a link to
the click id a postback carries.

Sources: TikTok's parameter mapping is TikTok's AppsFlyer integration guide's.
Ocean Engine's is the part of AppsFlyer's preset `bytedance_int` link that its Chinese help page
(support.appsflyer.com/hc/zh-cn/articles/115003019403) shows. AppsFlyer's lookback ranges:
support.appsflyer.com/hc/en-us/articles/208338403 (clicks 1 hour to 30 days, impressions up to
24 hours).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest

from dispatcher.config_loader import load_settings
from dispatcher.explain import explain
from dispatcher.links import LinkError, build_links, lookback_text, parse_params
from dispatcher.partners import adapter_for, names
from schemas.config import TopicFormats
from tests.factories import (
    NOW_S,
    event_dict,
    make_oe_partner,
    make_partner,
    oceanengine_event_dict,
    oe_app_dict,
    raw,
)
from tests.factories import app_dict as tiktok_app

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "dispatcher.yaml"
TIKTOK_MAPPING = {
    "c": "__CAMPAIGN_NAME__", "af_c_id": "__CAMPAIGN_ID__", "af_adset": "__AID_NAME__",
    "af_adset_id": "__AID__", "af_ad": "__CID_NAME__", "af_ad_id": "__CID__",
    "af_ad_type": "__CTYPE__", "clickid": "__CALLBACK_PARAM__", "android_id": "__ANDROIDID1__",
    "advertising_id": "__GAID__", "idfa": "__IDFA__", "os": "__OS__", "af_ip": "__IP__",
    "af_ua": "__UA1__", "af_lang": "__SL__", "af_channel": "__PLACEMENT__", "redirect": "false",
}  # fmt: skip


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def tiktok_links(**flags: Any) -> Any:
    partner = make_partner(tiktok_app(**flags.pop("app", {})))
    return build_links(partner, adapter_for("tiktok"), partner.apps[0], **flags)


# --- what the links carry ----------------------------------------------------------------------


def test_tiktok_links_carry_pid_the_documented_macros_and_the_app_lookbacks() -> None:
    links = tiktok_links(app={"click_lookback": "7d", "view_through": True,
                              "view_through_lookback": "12h"})  # fmt: skip
    assert links.click.startswith("https://app.appsflyer.com/id1234567890?pid=bytedanceglobal_int&")
    assert query(links.click) == {"pid": "bytedanceglobal_int", **TIKTOK_MAPPING,
                                  "af_click_lookback": "7d"}  # fmt: skip
    assert links.impression is not None
    assert links.impression.startswith("https://impression.appsflyer.com/id1234567890?")
    assert query(links.impression) == {"pid": "bytedanceglobal_int", **TIKTOK_MAPPING,
                                       "af_viewthrough_lookback": "12h"}  # fmt: skip
    assert "__CALLBACK_PARAM__" in links.click  # macros stay readable, unencoded
    assert links.warnings == ()


def test_every_partner_puts_its_click_id_macro_in_its_click_id_parameter() -> None:
    """The parameter the rules read the click id from is the one the link fills."""
    for name in names():
        adapter = adapter_for(name)
        assert dict(adapter.link_parameters)[adapter.click_id_parameter] == "__CALLBACK_PARAM__"


def test_ocean_engine_links_carry_appsflyers_bytedance_int_preset() -> None:
    partner = make_oe_partner(oe_app_dict(click_lookback="3d"))
    links = build_links(partner, adapter_for("oceanengine"), partner.apps[0])
    params = query(links.click)
    assert params["pid"] == "bytedance_int"
    assert params["clickid"] == "__CALLBACK_PARAM__"
    assert (params["af_c_id"], params["af_adset_id"], params["af_ad_id"]) == (
        "__PROJECT_ID__", "__PROMOTION_ID__", "__CID__",
    )  # fmt: skip
    assert params["af_click_lookback"] == "3d"


@pytest.mark.parametrize(
    ("flags", "click", "impression"),
    [
        ({"click_lookback": "12h"}, "12h", "1d"),
        ({"click_lookback": "30d", "view_through_lookback": "1h"}, "30d", "1h"),
        ({"view_through_lookback": "24h"}, "7d", "1d"),  # 24 hours is written as a day
        ({"click_lookback": "48h"}, "2d", "1d"),
    ],
)
def test_flags_override_the_app_config(flags: dict[str, str], click: str, impression: str) -> None:
    links = tiktok_links(**flags)
    assert query(links.click)["af_click_lookback"] == click
    assert links.impression is not None
    assert query(links.impression)["af_viewthrough_lookback"] == impression


def test_params_add_or_override_and_are_url_encoded() -> None:
    params = parse_params(["af_sub1=spring sale&more", "redirect=true", "af_siteid=a=b"])
    links = tiktok_links(params=params)
    decoded = query(links.click)
    assert decoded["af_sub1"] == "spring sale&more"
    assert decoded["redirect"] == "true"  # overridden in place
    assert decoded["af_siteid"] == "a=b"
    assert "af_sub1=spring%20sale%26more" in links.click
    assert list(decoded).index("redirect") < list(decoded).index("af_click_lookback")


def test_another_listed_media_source_may_be_chosen() -> None:
    links = tiktok_links(media_source="tiktokglobal_int")
    assert query(links.click)["pid"] == "tiktokglobal_int"


def test_view_through_off_is_a_warning_not_an_error() -> None:
    links = tiktok_links(app={"view_through": False})
    assert links.impression is not None
    [warning] = links.warnings
    assert "view_through: false" in warning
    assert "will not count" in warning


# --- what cannot be written --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "maximum", "expected"),
    [
        (timedelta(hours=1), timedelta(days=30), "1h"),
        (timedelta(hours=23), timedelta(days=30), "23h"),
        (timedelta(hours=24), timedelta(days=1), "1d"),
        (timedelta(days=30), timedelta(days=30), "30d"),
    ],
)
def test_lookbacks_are_written_as_appsflyer_accepts_them(
    value: timedelta, maximum: timedelta, expected: str
) -> None:
    assert lookback_text(value, maximum, "x") == expected


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"click_lookback": "36h"}, "--click-lookback 36h cannot be written in a link; allowed: "
         "whole hours 1h..23h or whole days 1d..30d"),
        ({"click_lookback": "90m"}, "--click-lookback 90m cannot be written"),
        ({"click_lookback": "31d"}, "--click-lookback 31d cannot be written"),
        ({"click_lookback": "30"}, "--click-lookback: '30' is not a duration"),
        ({"view_through_lookback": "2d"}, "--view-through-lookback 2d cannot be written in a link; "
         "allowed: whole hours 1h..23h or 1d"),
        ({"view_through_lookback": "30m"}, "--view-through-lookback 30m cannot be written"),
        ({"media_source": "googleadwords_int"}, "media source 'googleadwords_int' is not tiktok's; "
         "allowed: bytedanceglobal_int, tiktokglobal_int"),
        ({"app": {"click_lookback": "36h"}}, "apps[0].click_lookback 36h cannot be written"),
    ],
)  # fmt: skip
def test_what_cannot_be_written_is_refused_with_what_is_allowed(
    flags: dict[str, Any], message: str
) -> None:
    with pytest.raises(LinkError) as caught:
        tiktok_links(**flags)
    assert str(caught.value).startswith(message), caught.value


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["af_sub1"], "--param 'af_sub1': write KEY=VALUE"),
        (["=x"], "--param '=x': write KEY=VALUE"),
        (["pid=x"], "--param pid: set by the command"),
        (["af_click_lookback=1d"], "--param af_click_lookback: set by the command"),
    ],
)
def test_malformed_or_reserved_params_are_refused(items: list[str], message: str) -> None:
    with pytest.raises(LinkError, match=message.replace("(", r"\(")):
        parse_params(items)


# --- the command -------------------------------------------------------------------------------


def dispatcher(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_command_prints_both_partners_links_for_an_app() -> None:
    result = dispatcher("link", "--config", str(EXAMPLE), "--app", "id1234567890")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "tiktok, app id1234567890 (media source bytedanceglobal_int)" in out
    assert "oceanengine, app id1234567890 (media source bytedance_int)" in out
    assert out.count("https://app.appsflyer.com/id1234567890?pid=") == 2
    assert "warning: app id1234567890 has view_through: false" in result.stderr


def test_the_command_prints_one_json_document() -> None:
    result = dispatcher("link", "--config", str(EXAMPLE), "--app", "com.example.app",
                        "--partner", "tiktok", "--param", "af_sub1=a b", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    [links] = document["links"]
    assert (document["app_id"], links["partner"]) == ("com.example.app", "tiktok")
    assert links["click"]["parameters"]["af_sub1"] == "a b"
    assert links["impression"]["parameters"]["af_viewthrough_lookback"] == "1d"
    assert links["warnings"] == []  # this app has view_through: true


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--app", "com.unknown.app"], "app com.unknown.app is not configured in any partner "
         "file; configured: com.example.app, id1234567890"),
        (["--app", "id1234567890", "--partner", "nobody"], "partner 'nobody' has no file in "
         "the partners directory; allowed: oceanengine, tiktok"),
        (["--app", "id1234567890", "--click-lookback", "36h"], "--click-lookback 36h cannot be "
         "written in a link; allowed: whole hours 1h..23h or whole days 1d..30d"),
        (["--app", "id1234567890", "--media-source", "applovin_int"], "media source "
         "'applovin_int' is not"),
    ],
)  # fmt: skip
def test_the_command_exits_2_naming_what_is_allowed(args: list[str], message: str) -> None:
    result = dispatcher("link", "--config", str(EXAMPLE), *args)
    assert result.returncode == 2
    assert message in result.stderr, result.stderr
    assert result.stdout == ""


# --- the round trip: link → click → record → postback ------------------------------------------


def fill(url: str, values: dict[str, str]) -> str:
    """What the partner does: replace each macro by its (URL-encoded) value."""
    for macro, value in values.items():
        url = url.replace(macro, quote(value, safe=""))
    return url


@pytest.mark.parametrize(
    ("partner", "macros", "record", "path"),
    [
        pytest.param(
            "tiktok",
            {"__CALLBACK_PARAM__": "E.C.P.round/trip+1", "__CAMPAIGN_ID__": "1781234",
             "__AID__": "1791234", "__CID__": "1801234"},
            event_dict, ("ad", "callback"), id="tiktok",
        ),
        pytest.param(
            "oceanengine",
            {"__CALLBACK_PARAM__": "B.Cg9yb3VuZC10cmlw==", "__PROJECT_ID__": "7001",
             "__PROMOTION_ID__": "7002", "__CID__": "7003"},
            oceanengine_event_dict, ("context", "ad", "callback"), id="oceanengine",
        ),
    ],
)  # fmt: skip
def test_a_filled_link_in_original_url_yields_the_click_id_as_callback(
    partner: str, macros: dict[str, str], record: Any, path: tuple[str, ...]
) -> None:
    # Given the link the command prints, filled in by the partner on a click
    result = dispatcher("link", "--config", str(EXAMPLE), "--app", "id1234567890",
                        "--partner", partner, "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    [links] = json.loads(result.stdout)["links"]
    clicked = fill(links["click"]["url"], macros)
    # When AppsFlyer records it in the install's original_url, and its campaign parameters in
    # the fields of the same names
    ids = {k: v for k, v in query(clicked).items() if k in {"af_c_id", "af_adset_id", "af_ad_id"}}
    install = record("install", original_url=clicked, click_id=None, **ids)
    settings = load_settings(EXAMPLE, {"TIKTOK_ACCESS_TOKEN": "t"})
    decisions = explain(raw(install), settings.partners, TopicFormats(), NOW_S)["decisions"]
    [decision] = [d for d in decisions if d["partner"] == partner]
    # Then the postback carries the partner's own click id
    assert decision["decision"] == "send", decision["detail"]
    body = decision["request"]["body"]
    payload = body["data"][0] if partner == "tiktok" else body
    value: Any = payload
    for key in path:
        value = value[key]
    assert value == macros["__CALLBACK_PARAM__"]
    if partner == "tiktok":
        assert payload["ad"]["campaign_id"] == "1781234"
        assert payload["ad"]["ad_id"] == "1791234"  # TikTok's ad group: af_adset_id
        assert payload["ad"]["creative_id"] == "1801234"
