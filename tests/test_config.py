"""Configuration: defaults, ranges, every error with its file and path, environment overrides."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from dispatcher.config_loader import load_partners, load_settings
from dispatcher.errors import ConfigError
from schemas.durations import check_range, format_duration, parse_duration
from tests.factories import app_dict, partner_dict

REPO = Path(__file__).resolve().parent.parent
TOKEN_ENV = {"TIKTOK_ACCESS_TOKEN": "test-token-123"}


def write_config(
    tmp_path: Path, partner: dict[str, Any] | None = None, runtime: dict[str, Any] | None = None
) -> Path:
    (tmp_path / "partners").mkdir(exist_ok=True)
    (tmp_path / "partners" / "tiktok.yaml").write_text(yaml.safe_dump(partner or partner_dict()))
    config = tmp_path / "dispatcher.yaml"
    config.write_text(yaml.safe_dump(runtime or {"kafka": {"bootstrap_servers": "localhost:9092"}}))
    return config


def issues_of(config: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(config, TOKEN_ENV | (environ or {}))
    return [str(issue) for issue in caught.value.issues]


# --- durations -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30m", timedelta(minutes=30)), ("12h", timedelta(hours=12)), ("7d", timedelta(days=7))],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert format_duration(expected) == text


@pytest.mark.parametrize("text", ["7", 7, "7 days", "1w", "-1d", "1.5h", ""])
def test_malformed_durations(text: object) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(" 45m ", timedelta(minutes=45), id="spaces-around"),
        pytest.param("3 h", timedelta(hours=3), id="a-space-inside"),
        pytest.param("0d", timedelta(0), id="zero"),
        pytest.param("400d", timedelta(days=400), id="large"),
        pytest.param(timedelta(hours=5), timedelta(hours=5), id="already-a-duration"),
    ],
)
def test_durations_as_operators_write_them(value: object, expected: timedelta) -> None:
    assert parse_duration(value) == expected


def test_a_malformed_duration_says_how_to_write_one() -> None:
    whole = "7 is not a duration; write minutes, hours or days: 30m, 12h, 7d"
    with pytest.raises(ValueError, match=f"^{re.escape(whole)}$"):
        parse_duration(7)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0d"), (timedelta(minutes=1), "1m"), (timedelta(minutes=90), "90m"),
        (timedelta(hours=2), "2h"), (timedelta(hours=36), "36h"), (timedelta(days=1), "1d"),
        (timedelta(days=180), "180d"), (timedelta(days=1, minutes=1), "1441m"),
        (timedelta(minutes=5, seconds=30), "5m"),  # seconds are below what a YAML file writes
    ],
)  # fmt: skip
def test_a_duration_is_shown_in_its_largest_exact_unit(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (timedelta(hours=1), None),
        (timedelta(days=1), None),
        (timedelta(minutes=59), "59m is out of range; allowed: 1h to 1d"),
        (timedelta(hours=25), "25h is out of range; allowed: 1h to 1d"),
    ],
)
def test_a_range_includes_both_ends_and_names_itself(value: timedelta, error: str | None) -> None:
    if error is None:
        assert check_range(value, timedelta(hours=1), timedelta(days=1)) == value
    else:
        with pytest.raises(ValueError, match=f"^{re.escape(error)}$"):
            check_range(value, timedelta(hours=1), timedelta(days=1))


# --- the shipped example config ----------------------------------------------------------------


def test_example_config_is_valid() -> None:
    settings = load_settings(REPO / "config" / "dispatcher.yaml", TOKEN_ENV)
    tiktok = settings.partners.by_name("tiktok")
    assert set(tiktok.media_sources) == {"bytedanceglobal_int", "tiktokglobal_int"}
    assert settings.partners.tokens["tiktok"].get_secret_value() == "test-token-123"
    assert "test-token-123" not in repr(settings)


def test_defaults(tmp_path: Path) -> None:
    minimal_app = {"app_id": "id1", "tiktok_app_id": "7300000000000000001"}
    config = write_config(tmp_path, partner_dict(minimal_app))
    settings = load_settings(config, TOKEN_ENV)
    app = settings.partners.by_name("tiktok").apps[0]
    assert app.active is True
    assert app.view_through is False
    assert app.click_lookback == timedelta(days=7)
    assert app.view_through_lookback == timedelta(days=1)
    assert app.install_postbacks.scope == "attributed"
    assert app.in_app_postbacks.enabled is False  # no section: no in-app postbacks
    delivery = settings.partners.by_name("tiktok").delivery
    assert (delivery.batch_max_events, delivery.max_attempts) == (1000, 10)
    assert settings.runtime.kafka.dead_letter_topic == "postbacks-dead-letter"
    formats = settings.runtime.kafka.formats
    assert (formats.installs, formats.in_app_events) == ("appsflyer", "appsflyer")
    assert settings.runtime.metrics.port == 9108


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("7300000000000000001", "7300000000000000001", id="quoted"),
        pytest.param(7300000000000000001, "7300000000000000001", id="unquoted-yaml-reads-a-number"),
        pytest.param("abc", "'abc' is not a TikTok App ID", id="letters"),
        pytest.param(True, "True is not a TikTok App ID", id="a-boolean-is-no-number"),
        pytest.param(None, "None is not a TikTok App ID", id="null"),
        pytest.param("-73", "'-73' is not a TikTok App ID", id="a-sign"),
    ],
)  # fmt: skip
def test_a_tiktok_app_id_is_its_digits_as_text(
    tmp_path: Path, value: object, expected: str
) -> None:
    """An App ID written without quotes is read by YAML as a number and taken as its digits; any
    other non-text value is refused with the whole message (mutants of each branch and of the
    message survived a prefix check)."""
    config = write_config(tmp_path, partner_dict(app_dict(tiktok_app_id=value)))
    if expected.isdigit():
        app = load_settings(config, TOKEN_ENV).partners.by_name("tiktok").apps[0]
        assert app.tiktok_app_id == expected
        return
    partner_file = (tmp_path / "partners" / "tiktok.yaml").resolve()
    allowed = ('allowed: the digits of the App ID from TikTok Events Manager, quoted, '
               'e.g. "7300000000000000001"')  # fmt: skip
    assert f"{partner_file}: apps[0].tiktok_app_id: {expected}; {allowed}" in issues_of(config)


def test_in_app_window_defaults_to_180_days(tmp_path: Path) -> None:
    app = app_dict(in_app={"events": []})
    del app["in_app_postbacks"]["window"]
    settings = load_settings(write_config(tmp_path, partner_dict(app)), TOKEN_ENV)
    assert settings.partners.by_name("tiktok").apps[0].in_app_postbacks.window == timedelta(
        days=180
    )


# --- ranges and errors: file, path inside it, what is allowed ------------------------------------


@pytest.mark.parametrize(
    ("app_overrides", "expected"),
    [
        ({"click_lookback": "31d"}, "apps[0].click_lookback: 31d is out of range; allowed: 1h to 30d"),
        ({"click_lookback": "59m"}, "apps[0].click_lookback: 59m is out of range; allowed: 1h to 30d"),
        ({"view_through_lookback": "25h"}, "apps[0].view_through_lookback: 25h is out of range; allowed: 1h to 1d"),
        ({"in_app": {"window": "366d"}}, "apps[0].in_app_postbacks.window: 366d is out of range; allowed: 1h to 365d; or write `lifetime`"),
        ({"in_app": {"window": "30"}}, "apps[0].in_app_postbacks.window: '30' is not a duration"),
        ({"install_scope": "some"}, "apps[0].install_postbacks.scope: Input should be 'attributed' or 'all'"),
        ({"tiktok_app_id": "abc"}, "apps[0].tiktok_app_id: 'abc' is not a TikTok App ID"),
        ({"app_id": "my app"}, "apps[0].app_id: 'my app' is not a store app id"),
        ({"colour": "red"}, "apps[0].colour: unknown key; allowed: app_id, active, view_through"),
    ],
)  # fmt: skip
def test_config_errors_name_file_path_and_what_is_allowed(
    tmp_path: Path, app_overrides: dict[str, Any], expected: str
) -> None:
    config = write_config(tmp_path, partner_dict(app_dict(**app_overrides)))
    issues = issues_of(config)
    partner_file = str((tmp_path / "partners" / "tiktok.yaml").resolve())
    assert any(issue.startswith(f"{partner_file}: {expected}") for issue in issues), issues


def test_unknown_partner_event_lists_the_identifiers(tmp_path: Path) -> None:
    events = [
        {"sdk_event": "a", "partner_event": "Registration"},
        {"sdk_event": "b", "partner_event": "Login"},
        {"sdk_event": "c", "partner_event": "Checkout"},
        {"sdk_event": "d", "partner_event": "Purchase"},
    ]
    config = write_config(tmp_path, partner_dict(app_dict(in_app={"events": events})))
    [issue] = issues_of(config)
    assert "apps[0].in_app_postbacks.events[3].partner_event: 'Purchase' is not a TikTok" in issue
    assert "allowed: Registration, Pay(Purchase), View_content" in issue


def test_every_error_is_listed_at_once(tmp_path: Path) -> None:
    runtime = {
        "kafka": {"bootstrap_servers": "k:9092", "session_timeout_ms": "soon"},
        "metrics": {"port": -1},
    }
    partner = partner_dict(
        app_dict(click_lookback="90d"), app_dict(app_id="id2", tiktok_app_id="x")
    )
    issues = issues_of(write_config(tmp_path, partner, runtime))
    assert len(issues) == 4, issues
    assert any("dispatcher.yaml: kafka.session_timeout_ms" in issue for issue in issues)
    assert any("dispatcher.yaml: metrics.port" in issue for issue in issues)
    assert any("tiktok.yaml: apps[0].click_lookback" in issue for issue in issues)
    assert any("tiktok.yaml: apps[1].tiktok_app_id" in issue for issue in issues)


def test_duplicates_are_errors(tmp_path: Path) -> None:
    mappings = [
        {"sdk_event": "af_purchase", "partner_event": "Pay(Purchase)"},
        {"sdk_event": "af_purchase", "partner_event": "Checkout"},
    ]
    partner = partner_dict(app_dict(in_app={"events": mappings}))
    [issue] = issues_of(write_config(tmp_path, partner))
    assert "apps[0].in_app_postbacks.events: sdk_event 'af_purchase' is mapped twice" in issue
    [issue] = issues_of(write_config(tmp_path, partner_dict(app_dict(), app_dict())))
    assert "tiktok.yaml: apps: app_id 'id1234567890' is configured twice" in issue


def test_missing_token_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {})
    [issue] = caught.value.issues
    assert issue.path == "access_token_env"
    assert "TIKTOK_ACCESS_TOKEN is not set" in issue.message


def test_an_empty_token_is_reported_as_empty_not_as_unset(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {"TIKTOK_ACCESS_TOKEN": "  "})
    [issue] = caught.value.issues
    assert "TIKTOK_ACCESS_TOKEN is set but empty" in issue.message


@pytest.mark.parametrize(
    ("kafka", "expected"),
    [
        ({"security_protocol": "SSL", "ssl_certfile": "/c.pem"},
         "ssl_certfile and ssl_keyfile go together"),
        ({"security_protocol": "SSL", "ssl_keyfile": "/c.key"},
         "ssl_certfile and ssl_keyfile go together"),
        ({"ssl_certfile": "/c.pem", "ssl_keyfile": "/c.key"},
         "need security_protocol SSL or SASL_SSL, not PLAINTEXT"),
    ],
)  # fmt: skip
def test_tls_client_authentication_settings_are_checked(
    tmp_path: Path, kafka: dict[str, Any], expected: str
) -> None:
    runtime = {"kafka": {"bootstrap_servers": "k:9092"} | kafka}
    issues = issues_of(write_config(tmp_path, runtime=runtime))
    assert any(expected in issue for issue in issues), issues


def test_tls_client_authentication_reaches_the_kafka_clients(tmp_path: Path) -> None:
    from dispatcher.kafka_clients import _common

    kafka = {"bootstrap_servers": "k:9093", "security_protocol": "SSL", "ssl_cafile": "/ca.pem",
             "ssl_certfile": "/service.cert", "ssl_keyfile": "/service.key"}  # fmt: skip
    settings = load_settings(write_config(tmp_path, runtime={"kafka": kafka}), TOKEN_ENV)
    options = _common(settings)
    assert (options["security_protocol"], options["ssl_cafile"]) == ("SSL", "/ca.pem")
    assert (options["ssl_certfile"], options["ssl_keyfile"]) == ("/service.cert", "/service.key")


def test_a_token_in_yaml_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, partner_dict(access_token="abc"))
    assert any("access_token: unknown key" in issue for issue in issues_of(config))


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "partners" / "tiktok.yaml").write_text("partner: tiktok\napps: [\n")
    [issue] = issues_of(config)
    assert "tiktok.yaml: line 3, column 1: not valid YAML" in issue


def test_unknown_partner_and_empty_partner_dir(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "partners" / "tiktok.yaml").write_text("partner: snapchat\n")
    assert any(
        "partner: 'snapchat' is not a known partner; allowed: tiktok" in i
        for i in issues_of(config)
    )
    (tmp_path / "partners" / "tiktok.yaml").unlink()
    assert any("no partner files" in i for i in issues_of(config))


def test_runtime_cross_field_checks(tmp_path: Path) -> None:
    runtime = {
        "kafka": {"bootstrap_servers": "k:9092", "heartbeat_interval_ms": 20000, "session_timeout_ms": 10000,
                  "topics": {"installs": "same", "in_app_events": "same"}},
    }  # fmt: skip
    issues = issues_of(write_config(tmp_path, runtime=runtime))
    assert any("heartbeat_interval_ms must be below session_timeout_ms" in i for i in issues), (
        issues
    )
    runtime = {"kafka": {"bootstrap_servers": "k:9092", "fetch_max_wait_ms": 5000,
                         "request_timeout_ms": 5000}}  # fmt: skip
    issues = issues_of(write_config(tmp_path, runtime=runtime))
    assert any("request_timeout_ms must be above fetch_max_wait_ms" in i for i in issues), issues


def test_an_unknown_input_format_names_the_topic_and_the_formats(tmp_path: Path) -> None:
    runtime = {"kafka": {"bootstrap_servers": "k:9092", "formats": {"in_app_events": "segment"}}}
    config = write_config(tmp_path, runtime=runtime)
    assert issues_of(config) == [
        f"{config}: kafka.formats.in_app_events: 'segment' is not a known input format; "
        "allowed: appsflyer"
    ]
    issues = issues_of(config, {"DISPATCHER_KAFKA__FORMATS__INSTALLS": "csv"})
    assert any("kafka.formats.installs: 'csv' is not a known input format" in i for i in issues)


# --- environment overrides -----------------------------------------------------------------------


def test_environment_overrides_every_level(tmp_path: Path) -> None:
    config = write_config(tmp_path, partner_dict(app_dict(), app_dict(app_id="id2")))
    environ = TOKEN_ENV | {
        "DISPATCHER_KAFKA__BOOTSTRAP_SERVERS": "a:1,b:2",
        "DISPATCHER_METRICS__PORT": "9200",
        "DISPATCHER_WORKER__MAX_INFLIGHT_EVENTS": "500",
        "DISPATCHER_PARTNERS__TIKTOK__DELIVERY__MAX_REQUESTS_PER_S": "5",
        "DISPATCHER_PARTNERS__TIKTOK__APPS__1__ACTIVE": "false",
    }
    settings = load_settings(config, environ)
    assert settings.runtime.kafka.bootstrap_servers == ("a:1", "b:2")
    assert settings.runtime.metrics.port == 9200
    assert settings.runtime.worker.max_inflight_events == 500
    tiktok = settings.partners.by_name("tiktok")
    assert tiktok.delivery.max_requests_per_s == 5
    assert [app.active for app in tiktok.apps] == [True, False]


def test_a_bad_override_names_the_variable(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    issues = issues_of(config, {"DISPATCHER_METRICS__PORT": "many"})
    assert any("metrics.port" in i and "DISPATCHER_METRICS__PORT" in i for i in issues), issues
    issues = issues_of(config, {"DISPATCHER_PARTNERS__TIKTOK__APPS__5__ACTIVE": "true"})
    assert any("apps[5].active: cannot apply" in i and "has 1 entries" in i for i in issues), issues


def test_reload_loads_partner_files_alone(tmp_path: Path) -> None:
    write_config(tmp_path)
    partners = load_partners(tmp_path / "partners", TOKEN_ENV)
    assert [p.partner for p in partners.partners] == ["tiktok"]


def test_an_override_of_a_partner_no_file_configures_is_an_error(tmp_path: Path) -> None:
    """A misspelt partner in an override variable would otherwise change nothing, silently."""
    (tmp_path / "partners").mkdir()
    (tmp_path / "partners" / "tiktok.yaml").write_text(yaml.safe_dump(partner_dict()))
    config = tmp_path / "dispatcher.yaml"
    config.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": "localhost:9092"}}))
    environ = {"TIKTOK_ACCESS_TOKEN": "t",
               "DISPATCHER_PARTNERS__TIKTOCK__ENDPOINT": "https://example.test/"}  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ)
    [issue] = caught.value.issues
    assert str(issue) == (
        "DISPATCHER_PARTNERS__TIKTOCK__ENDPOINT: overrides partner 'tiktock', which no file in "
        f"{tmp_path / 'partners'} configures; allowed: DISPATCHER_PARTNERS__TIKTOK__..."
    )
    environ["DISPATCHER_PARTNERS__TIKTOK__ENDPOINT"] = environ.pop(
        "DISPATCHER_PARTNERS__TIKTOCK__ENDPOINT"
    )
    assert load_settings(config, environ).partners.partners[0].endpoint == "https://example.test/"


@pytest.mark.parametrize(
    ("runtime", "expected"),
    [({"metrics": {"port": 70000}}, "metrics.port: 70000 is out of range; allowed: 0 to 65535"),
     ({"worker": {"max_inflight_events": 5}},
      "worker.max_inflight_events: 5 is out of range; allowed: 10 to 1000000"),
     ({"worker": {"processes": 0}}, "worker.processes: 0 is out of range; allowed: 1 to 64"),
     ({"kafka": {"bootstrap_servers": "k:9092", "request_timeout_ms": 200_000}},
      "kafka.request_timeout_ms: 200000 is out of range; allowed: 1000 to 110000")],
)  # fmt: skip
def test_a_number_out_of_range_names_the_allowed_range(
    tmp_path: Path, runtime: dict[str, Any], expected: str
) -> None:
    (tmp_path / "partners").mkdir()
    (tmp_path / "partners" / "tiktok.yaml").write_text(yaml.safe_dump(partner_dict()))
    config = tmp_path / "dispatcher.yaml"
    config.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": "localhost:9092"}} | runtime))
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {"TIKTOK_ACCESS_TOKEN": "t"})
    assert [str(issue) for issue in caught.value.issues] == [f"{config}: {expected}"]


@pytest.mark.parametrize("given", ["relative", "absolute"])
def test_messages_name_every_file_the_way_the_config_path_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    # Given errors in dispatcher.yaml and in a partner file
    partner = partner_dict()
    partner["apps"][0]["click_lookback"] = "99d"
    runtime = {"kafka": {"bootstrap_servers": "localhost:9092"}, "metrics": {"port": 99999}}
    write_config(tmp_path / "conf", partner, runtime) if (
        tmp_path / "conf"
    ).mkdir() is None else None
    monkeypatch.chdir(tmp_path)
    config = (
        Path("conf/dispatcher.yaml")
        if given == "relative"
        else tmp_path / "conf" / "dispatcher.yaml"
    )
    # Then both are named alike: relative when it was, absolute when it was
    files = {issue.split(": ")[0] for issue in issues_of(config)}
    prefix = "conf" if given == "relative" else str(tmp_path / "conf")
    assert files == {f"{prefix}/dispatcher.yaml", f"{prefix}/partners/tiktok.yaml"}
