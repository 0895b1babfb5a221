"""A partner is one package plus its YAML, registered once: a toy partner, added by a test, is
loaded from its file, decided by the rules and delivered by the channel with no change to either."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import yaml

from dispatcher.config_loader import load_settings
from dispatcher.delivery import DeliveryService, PartnerChannel, PartnerHttp, Settled, WorkItem
from dispatcher.errors import ConfigError
from dispatcher.metrics import Metrics
from dispatcher.outcomes import AttemptKind, AttemptResult, Outcome
from dispatcher.partners import Partner, PostbackContent, adapter_for, names
from dispatcher.partners.registry import registered
from dispatcher.rules import Send, Skip, decide
from schemas.config import AppConfig, PartnerConfig
from tests.factories import NOW_S, click_url, make_install, partner_dict


class ToyApp(AppConfig):
    """A toy partner's app: its destination is the app itself."""


class ToyConfig(PartnerConfig):
    """A toy partner's file."""

    partner: Literal["toy"]
    apps: tuple[ToyApp, ...] = ()


class ToyAdapter:
    """One event per object, a bearer token, HTTP status decides."""

    name = "toy"
    install_event = "install"
    click_id_parameter = "clickid"
    requires_click_id: bool = False
    revenue_currencies: frozenset[str] | None = None
    link_parameters = (("clickid", "__TOY_CLICK__"),)
    has_impression_link: bool = False

    def build_event(self, content: PostbackContent) -> dict[str, Any]:
        return {"kind": content.partner_event or self.install_event, "id": content.event.event_id,
                "click": content.event.click_id_for("clickid")}  # fmt: skip

    def event_label(self, payload: Mapping[str, Any]) -> str:
        return str(payload["kind"])

    def encode_request(self, destination: str, payloads: Sequence[Mapping[str, Any]]) -> bytes:
        return json.dumps({"app": destination, "events": list(payloads)}).encode()

    def request_headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def body_headers(self, body: bytes, secret: str) -> dict[str, str]:
        return {}

    def classify(
        self, status: int, headers: Mapping[str, str], body: bytes, now: float
    ) -> AttemptResult:
        if status == 200:
            return AttemptResult(AttemptKind.OK, status, None, "ok")
        kind = AttemptKind.RETRYABLE if status >= 500 else AttemptKind.FATAL
        return AttemptResult(kind, status, None, f"HTTP {status}")

    def should_split(self, result: AttemptResult, size: int) -> bool:
        return False


TOY = Partner("toy", ToyConfig, ToyAdapter())
TOY_FILE = {"partner": "toy", "media_sources": ["toy_int"], "endpoint": "http://toy.test/conv",
            "access_token_env": "TOY_TOKEN", "apps": [{"app_id": "id1234567890"}]}  # fmt: skip


def write_partners(tmp_path: Path) -> Path:
    (tmp_path / "partners").mkdir()
    (tmp_path / "partners" / "tiktok.yaml").write_text(yaml.safe_dump(partner_dict()))
    (tmp_path / "partners" / "toy.yaml").write_text(yaml.safe_dump(TOY_FILE))
    config = tmp_path / "dispatcher.yaml"
    config.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": "k:9092"}}))
    return config


def test_both_partners_are_registered() -> None:
    assert names() == ["tiktok", "oceanengine"]
    assert adapter_for("tiktok").name == "tiktok"
    assert adapter_for("oceanengine").name == "oceanengine"


def test_a_partner_unknown_to_the_registry_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write_partners(tmp_path), {"TIKTOK_ACCESS_TOKEN": "t", "TOY_TOKEN": "y"})
    assert any(
        "'toy' is not a known partner; allowed: tiktok" in str(i) for i in caught.value.issues
    )


def test_a_registered_toy_partner_is_loaded_decided_and_delivered(tmp_path: Path) -> None:
    with registered(TOY):
        # Given the toy partner's file beside TikTok's
        settings = load_settings(
            write_partners(tmp_path), {"TIKTOK_ACCESS_TOKEN": "t", "TOY_TOKEN": "toy-secret"}
        )
        toy = settings.partners.by_name("toy")
        assert isinstance(toy, ToyConfig)
        # When an install clicked on a toy link is decided for both partners
        event = make_install(media_source="toy_int", original_url=click_url("toy-click-7"))
        decisions = {p.partner: decide(event, p, adapter_for(p.partner), NOW_S)
                     for p in settings.partners.partners}  # fmt: skip
        # Then only the toy partner is owed it, with its own payload
        assert isinstance(decisions["tiktok"], Skip)
        sent = decisions["toy"]
        assert isinstance(sent, Send)
        assert sent.payload == {"kind": "install", "id": event.event_id, "click": "toy-click-7"}
        # And the channel delivers it with the toy's request, unchanged delivery code
        requests: list[httpx.Request] = []
        settled: list[Settled] = []

        def answer(request: httpx.Request) -> httpx.Response:
            requests.append(request)
            return httpx.Response(200)

        async def deliver() -> None:
            adapter = adapter_for("toy")
            http = PartnerHttp(
                httpx.AsyncClient(transport=httpx.MockTransport(answer)), adapter, time.time
            )
            channel = PartnerChannel(toy, adapter, "toy-secret", http, Metrics(), settled.append)
            channel.submit([WorkItem("installs", 0, 5, None, b"{}", "toy", sent.destination,
                                     sent.payload, "install", time.time(), time.monotonic())])  # fmt: skip
            while not settled:
                await asyncio.sleep(0.005)
            await channel.close()

        asyncio.run(deliver())
    assert names() == ["tiktok", "oceanengine"]  # the toy was registered for the block only
    [request] = requests
    assert str(request.url) == "http://toy.test/conv"
    assert request.headers["Authorization"] == "Bearer toy-secret"
    assert json.loads(request.content) == {"app": "id1234567890", "events": [sent.payload]}
    assert settled[0].result.outcome is Outcome.DELIVERED


def test_a_partner_without_a_token_needs_no_variable_and_sends_no_credentials(
    tmp_path: Path,
) -> None:
    with registered(TOY):
        config = write_partners(tmp_path)
        tokenless = {key: value for key, value in TOY_FILE.items() if key != "access_token_env"}
        (tmp_path / "partners" / "toy.yaml").write_text(yaml.safe_dump(tokenless))
        settings = load_settings(config, {"TIKTOK_ACCESS_TOKEN": "t"})  # no TOY_TOKEN set
        assert settings.partners.by_name("toy").access_token_env is None
        assert "toy" not in settings.partners.tokens
        seen: list[httpx.Request] = []
        service = DeliveryService(settings.partners, Metrics(), lambda settled: None,
                                  transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(200)))  # fmt: skip
        service.start()
        try:
            service.submit([WorkItem("installs", 0, 1, None, b"{}", "toy", "id1234567890",
                                     {"kind": "install"}, "install", time.time(), time.monotonic())])  # fmt: skip
            deadline = time.monotonic() + 10
            while not seen and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            service.stop(5)
    [request] = seen
    assert "authorization" not in request.headers
