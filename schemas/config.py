"""Runtime (`dispatcher.yaml`) and partner (`partners/*.yaml`) configuration.

Validated once at start-up (and on reload), then frozen. Secrets are never in these models: a
partner file names the environment variable (or the file) that holds its token.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from types import MappingProxyType
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from schemas.durations import check_range, parse_duration

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

Scope = Literal["attributed", "all"]
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_APP_ID = re.compile(r"id\d+|[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+")


def _click_lookback(value: timedelta) -> timedelta:
    return check_range(value, HOUR, timedelta(days=30))


def _view_through_lookback(value: timedelta) -> timedelta:
    return check_range(value, HOUR, DAY)


def _duration_or_lifetime(lifetime_means: str) -> Callable[[object], timedelta | None]:
    """A parser of `1h`..`365d`, or `lifetime` (None); its error says what `lifetime` means."""

    def parse(value: object) -> timedelta | None:
        if value is None or value == "lifetime":
            return None
        try:
            return check_range(parse_duration(value), HOUR, timedelta(days=365))
        except ValueError as exc:
            raise ValueError(f"{exc}; or write `lifetime` {lifetime_means}") from None

    return parse


_parse_window = _duration_or_lifetime("for no limit")
_parse_max_event_age = _duration_or_lifetime("to send events of any age")


ClickLookback = Annotated[
    timedelta, BeforeValidator(parse_duration), AfterValidator(_click_lookback)
]
ViewThroughLookback = Annotated[
    timedelta, BeforeValidator(parse_duration), AfterValidator(_view_through_lookback)
]
Window = Annotated[timedelta | None, BeforeValidator(_parse_window)]
MaxEventAge = Annotated[timedelta | None, BeforeValidator(_parse_max_event_age)]


def _env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an environment variable name; allowed: upper-case letters, digits "
            "and underscores, e.g. TIKTOK_ACCESS_TOKEN (the token itself never goes in YAML)"
        )
    return value


EnvName = Annotated[str, AfterValidator(_env_name)]


_T = TypeVar("_T")


def _unique(items: tuple[_T, ...], key: Callable[[_T], str], message: str) -> tuple[_T, ...]:
    """`items` unchanged, or a ValueError naming (with `message`) the first key seen twice."""
    seen: set[str] = set()
    for item in items:
        if (value := key(item)) in seen:
            raise ValueError(message.format(value))
        seen.add(value)
    return items


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


# ---------------------------------------------------------------------------------------------
# Partner files


class InstallPostbacks(_Config):
    """Which installs are sent: only those attributed to this partner, or all."""

    scope: Scope = "attributed"


class EventMapping(_Config):
    """One SDK event → partner event identifier, and whether its revenue is sent."""

    sdk_event: Annotated[str, Field(min_length=1)]
    partner_event: str
    send_revenue: bool = False


class InAppPostbacks(_Config):
    """In-app postback settings; absent means no in-app postbacks."""

    enabled: bool = True
    scope: Scope = "attributed"
    window: Window = timedelta(days=180)
    events: tuple[EventMapping, ...] = ()

    @field_validator("events")
    @classmethod
    def _unique_sdk_events(cls, events: tuple[EventMapping, ...]) -> tuple[EventMapping, ...]:
        return _unique(
            events, lambda event: event.sdk_event, "sdk_event {!r} is mapped twice; map it once"
        )

    # Lookups are built once per (frozen) config, not per event: a cached_property lives in the
    # instance dict and reads as fast as a field (a PrivateAttr goes through __getattr__).
    @cached_property
    def mapping_for(self) -> Callable[[str], EventMapping | None]:
        """`mapping_for(sdk_event)`: the mapping of an SDK event name, or None when unmapped."""
        return MappingProxyType({e.sdk_event: e for e in self.events}).get


class Consent(_Config):
    """What is sent for a user who has not agreed to their data being shared for advertising:
    nothing (`skip`), or the event without identifiers, IP or user agent (`limited`)."""

    without_consent: Literal["skip", "limited"] = "skip"


class AppConfig(_Config):
    """One app's settings for one partner."""

    app_id: str
    active: bool = True
    view_through: bool = False
    click_lookback: ClickLookback = timedelta(days=7)
    view_through_lookback: ViewThroughLookback = DAY
    install_postbacks: InstallPostbacks = InstallPostbacks()
    in_app_postbacks: InAppPostbacks = InAppPostbacks(enabled=False)
    # Events the measurement platform's validation rules rejected are sent too.
    send_rejected: bool = False
    consent: Consent = Consent()

    @field_validator("app_id")
    @classmethod
    def _store_id(cls, value: str) -> str:
        if not _APP_ID.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a store app id; allowed: an App Store id like id123456789 "
                "or an Android package name like com.example.app"
            )
        return value

    @property
    def destination(self) -> str:
        """Where this app's postbacks go at the partner; events to one destination may batch."""
        return self.app_id

    @property
    def test_mode(self) -> str | None:
        """How the partner is told this app's events are tests (named at start-up), or None
        when they count for real."""
        return None


class DeliveryConfig(_Config):
    """How postbacks are sent to one partner; every value has a default."""

    # A partner's own model lowers the ceiling to what its API accepts in one request.
    batch_max_events: Annotated[int, Field(ge=1, le=10_000)] = 1000
    batch_linger_ms: Annotated[int, Field(ge=0, le=10_000)] = 100
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 10
    backoff_initial_s: Annotated[float, Field(gt=0, le=3600)] = 0.5
    backoff_max_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    give_up_after_s: Annotated[float, Field(gt=0, le=7 * 86400)] = 3600.0
    max_requests_per_s: Annotated[float, Field(gt=0, le=100_000)] = 50.0
    max_concurrent_requests: Annotated[int, Field(ge=1, le=256)] = 8
    # Events older than this when decided (or still retrying past it) are not sent: `too_old`.
    # None (`lifetime`): any age. A partner's own model sets its documented limit.
    max_event_age: MaxEventAge = None
    # A partner app held on a setup answer (a bad token, no permission) is probed this often,
    # and its held events are dead-lettered `partner_setup` after `hold_max_s`.
    setup_retry_s: Annotated[float, Field(ge=1, le=86_400)] = 60.0
    hold_max_s: Annotated[float, Field(ge=60, le=30 * 86_400)] = 86_400.0

    @cached_property
    def max_event_age_s(self) -> float | None:
        """`max_event_age` in seconds (read per event), None for any age."""
        age = self.max_event_age
        return None if age is None else age.total_seconds()

    @model_validator(mode="after")
    def _consistent(self) -> DeliveryConfig:
        if self.backoff_initial_s > self.backoff_max_s:
            raise ValueError("backoff_initial_s must not exceed backoff_max_s")
        if self.timeout_s >= self.give_up_after_s:
            raise ValueError("timeout_s must be below give_up_after_s")
        return self


class _BothTokenSources:
    """Marks `access_token_file` when `access_token_env` is set too, so the error has a path."""


class PartnerConfig(_Config):
    """A partner file: who the partner is, where and how to deliver, and its apps."""

    partner: str
    media_sources: Annotated[tuple[str, ...], Field(min_length=1)]
    endpoint: str
    # The variable holding the partner's token; None for a partner that takes none.
    access_token_env: EnvName | None = None
    # Or a file holding it (a mounted Kubernetes Secret): re-read on SIGHUP and when it changes.
    access_token_file: str | None = None
    delivery: DeliveryConfig = DeliveryConfig()
    apps: tuple[AppConfig, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _one_token_source(cls, data: object) -> object:
        # Checked on the file as written: a partner's model may give access_token_env a default.
        if (
            isinstance(data, dict)
            and data.get("access_token_env") is not None
            and data.get("access_token_file") is not None
        ):
            return {**data, "access_token_file": _BothTokenSources()}
        return data

    @field_validator("access_token_file", mode="before")
    @classmethod
    def _token_file(cls, value: object) -> object:
        if isinstance(value, _BothTokenSources):
            raise ValueError(
                "access_token_env and access_token_file are both set; allowed: one of them "
                "(access_token_file for a token mounted as a file, access_token_env for one in "
                "the environment)"
            )
        if isinstance(value, str) and not value.strip():
            raise ValueError("empty; allowed: the path of the file holding the token")
        return value

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("media_sources")
    @classmethod
    def _normalise_media_sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(source.strip().lower() for source in value)

    @field_validator("apps")
    @classmethod
    def _unique_apps(cls, apps: tuple[AppConfig, ...]) -> tuple[AppConfig, ...]:
        return _unique(
            apps, lambda app: app.app_id, "app_id {!r} is configured twice; keep one entry"
        )

    @property
    def name(self) -> str:
        """The partner's name: the file's `partner:` key."""
        return self.partner

    @cached_property
    def app(self) -> Callable[[str], AppConfig | None]:
        """`app(app_id)`: this partner's config for an app, or None when it is not configured."""
        return MappingProxyType({app.app_id: app for app in self.apps}).get

    def destination_of(self, app_id: str) -> str:
        """Where this partner's postbacks of an app go (or would go); the AppsFlyer app id
        itself for an app it does not configure."""
        app = self.app(app_id)
        return app_id if app is None else app.destination

    @cached_property
    def _media_source_set(self) -> frozenset[str]:
        return frozenset(self.media_sources)

    def is_partner_media_source(self, media_source: str | None) -> bool:
        """True when an install's media source is one of this partner's."""
        return media_source is not None and media_source.lower() in self._media_source_set


# ---------------------------------------------------------------------------------------------
# dispatcher.yaml


class KafkaTopics(_Config):
    """Source topics."""

    installs: str = "installs"
    in_app_events: str = "in-app-events"


class TopicFormats(_Config):
    """The input format of each source topic: the name of a decoder (`dispatcher.inputs`)."""

    installs: str = "appsflyer"
    in_app_events: str = "appsflyer"


def _bootstrap_list(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class KafkaConfig(_Config):
    """Connection, consumer group and topics."""

    bootstrap_servers: Annotated[
        tuple[str, ...], BeforeValidator(_bootstrap_list), Field(min_length=1)
    ]
    group_id: str = "postback-dispatcher"
    # Static membership: a stable name per worker (a StatefulSet pod's name). A member that
    # comes back under the same name within session_timeout_ms gets its partitions back
    # without a rebalance. None: dynamic membership.
    group_instance_id: Annotated[str, Field(min_length=1, max_length=249)] | None = None
    client_id: str = "postback-dispatcher"
    topics: KafkaTopics = KafkaTopics()
    formats: TopicFormats = TopicFormats()
    dead_letter_topic: str = "postbacks-dead-letter"
    # Every owed postback's final outcome (docs/postback-log.md); None turns the log off.
    postback_log_topic: str | None = "postbacks-log"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    # How what the dispatcher writes (postback log records, dead letters) is compressed: the
    # log's JSON lines repeat their keys and most values, which the broker would otherwise
    # store and copy in full. Apache Kafka reads zstd from 2.1 on; `none` for an older broker.
    compression_type: Literal["zstd", "none"] = "zstd"
    # How long start-up waits for the first broker to answer before it exits 1.
    connect_timeout_s: Annotated[float, Field(ge=1, le=600)] = 30.0
    session_timeout_ms: Annotated[int, Field(ge=1000, le=600_000)] = 10_000
    heartbeat_interval_ms: Annotated[int, Field(ge=100, le=60_000)] = 3_000
    max_poll_interval_ms: Annotated[int, Field(ge=1000, le=3_600_000)] = 60_000
    max_poll_records: Annotated[int, Field(ge=1, le=100_000)] = 2_000
    # How often the consumer re-reads the cluster's metadata (Kafka's default: 5 minutes); it
    # bounds how soon a deleted source topic is reported.
    metadata_max_age_ms: Annotated[int, Field(ge=1000, le=3_600_000)] = 30_000
    # How long the broker may hold a fetch while it has no new record (Kafka's default). Apache
    # Kafka answers as soon as one arrives; a broker that waits the whole time adds it to latency.
    fetch_max_wait_ms: Annotated[int, Field(ge=0, le=60_000)] = 500
    # How long any request to the broker may go unanswered (kafka-python's default). It is also
    # how soon a broker that hangs, its connections open, is noticed: the heartbeat waits for
    # its answer. At most 110 s: the producer's delivery timeout (120 s) must cover one request.
    request_timeout_ms: Annotated[int, Field(ge=1000, le=110_000)] = 30_000
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password_env: EnvName | None = None
    ssl_cafile: str | None = None
    # TLS client authentication (clusters such as Aiven require it): a certificate and its
    # unencrypted private key, PEM files.
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> KafkaConfig:
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be below session_timeout_ms")
        if self.request_timeout_ms <= self.fetch_max_wait_ms:
            raise ValueError(
                "request_timeout_ms must be above fetch_max_wait_ms (a fetch the broker may hold "
                "that long would time out)"
            )
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password_env
        ):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_mechanism, sasl_username "
                "and sasl_password_env"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError(
                "ssl_certfile and ssl_keyfile go together (a client certificate and its key)"
            )
        if (self.ssl_certfile or self.ssl_cafile) and not self.security_protocol.endswith("SSL"):
            raise ValueError(
                f"ssl_cafile / ssl_certfile need security_protocol SSL or SASL_SSL, not "
                f"{self.security_protocol}"
            )
        sources = {self.topics.installs, self.topics.in_app_events}
        if len(sources) < 2 or self.dead_letter_topic in sources:
            raise ValueError(
                "topics.installs, topics.in_app_events and dead_letter_topic must differ"
            )
        if self.postback_log_topic in {*sources, self.dead_letter_topic}:
            raise ValueError(
                "postback_log_topic must differ from topics.installs, topics.in_app_events and "
                "dead_letter_topic (or be null to turn the postback log off)"
            )
        return self


class MetricsConfig(_Config):
    """Where `/metrics`, `/healthz` and `/readyz` listen; port 0 picks a free one."""

    host: str = "0.0.0.0"  # noqa: S104 - a metrics endpoint is scraped from outside the pod
    port: Annotated[int, Field(ge=0, le=65535)] = 9108


class WorkerConfig(_Config):
    """Back-pressure, commit cadence and time bounds of the loop."""

    max_inflight_events: Annotated[int, Field(ge=10, le=1_000_000)] = 20_000
    # How often what became final is committed (asynchronously): a crash re-sends little more
    # than what was in flight.
    commit_interval_ms: Annotated[int, Field(ge=10, le=60_000)] = 200
    shutdown_timeout_s: Annotated[float, Field(ge=0, le=600)] = 30.0
    rebalance_drain_s: Annotated[float, Field(ge=0, le=600)] = 5.0
    # Worker processes under one supervisor, all in the consumer group: one process uses about
    # one core (docs/deploy/processes.md).
    processes: Annotated[int, Field(ge=1, le=64)] = 1


class PostbackLogConfig(_Config):
    """What the postback log (`kafka.postback_log_topic`) keeps beyond each postback's outcome."""

    # The user's device identifiers, IP and user agent in the logged payload.
    include_user: bool = False
    # A record for each decision not to send too (most events are such decisions).
    skips: bool = False
    # How far before the oldest uncommitted event a newly assigned partition looks for what the
    # log shows as final (clock skew between the source topic's timestamps and the workers').
    lookback_margin_s: Annotated[float, Field(ge=0, le=3_600)] = 10.0


class LogConfig(_Config):
    """Log level and format (`json` gives one JSON object per line)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class RuntimeConfig(_Config):
    """`dispatcher.yaml`."""

    kafka: KafkaConfig
    partners_dir: str = "partners"
    metrics: MetricsConfig = MetricsConfig()
    worker: WorkerConfig = WorkerConfig()
    log: LogConfig = LogConfig()
    postback_log: PostbackLogConfig = PostbackLogConfig()

    @model_validator(mode="after")
    def _drain_fits_poll_interval(self) -> RuntimeConfig:
        if self.worker.rebalance_drain_s * 1000 >= self.kafka.max_poll_interval_ms:
            raise ValueError(
                "worker.rebalance_drain_s must be shorter than kafka.max_poll_interval_ms, or the "
                "group evicts the worker while it drains"
            )
        return self
