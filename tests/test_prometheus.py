"""A real Prometheus scrapes a real worker: the metrics, the alert rules and the dashboard's queries
work against the live `/metrics`, not only on paper.

Needs the `prometheus` binary and the broker: missing, the test skips locally and fails in CI.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dispatcher.devtools.broker import LocalBroker, free_port
from dispatcher.devtools.processes import stop_process
from dispatcher.devtools.sandbox import PartnerSandbox
from tests.conftest import required_binary
from tests.factories import event_dict, event_id_of, oceanengine_event_dict, oe_partner_dict
from tests.pipeline import REPO, Topics, WorkerProcess, produce, sandbox_ids, wait_for, write_config
from tests.test_compose import DASHBOARD, JOB, dashboard_queries

pytestmark = [pytest.mark.prometheus, pytest.mark.broker]

RULES = REPO / "deploy" / "prometheus" / "alerts.yml"


class PrometheusServer:
    """`prometheus` as a child process on a free loopback port, scraping one target every second."""

    def __init__(self, binary: str, directory: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / "prometheus.log"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
        }  # fmt: skip
        self.config_path = directory / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.command = [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrometheusServer:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=log)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        stop_process(self.process, timeout_s=15)

    def is_ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.log_path.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def api(self, path: str, **params: str) -> Any:
        """`data` of a Prometheus HTTP API answer; fails on an error answer."""
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        body = response.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query_error(self, promql: str) -> str | None:
        """Why Prometheus refuses a query (None: it runs)."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        body = response.json()
        return None if body["status"] == "success" else str(body.get("error"))

    def value(self, promql: str) -> float | None:
        """The value of a query with a single result (None when it has none)."""
        result = self.api("query", query=promql)["result"]
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None


def grafana_to_promql(expr: str, partner: str = ".*") -> str:
    """A dashboard query as Grafana sends it: its variables replaced."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace("$instance", ".*")
        .replace("$partner", partner)
    )


def rule_states(prometheus: PrometheusServer) -> dict[str, str]:
    """Alerting rule name → health ("ok" once evaluated without error)."""
    groups = prometheus.api("rules", type="alert")["groups"]
    return {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}


def test_prometheus_scrapes_the_worker_and_evaluates_the_alerts(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    binary = required_binary("prometheus")
    # Given a worker that has delivered a few postbacks
    topics = Topics.create(broker, "prometheus")
    events = [event_dict("install") for _ in range(6)]
    conversions = [oceanengine_event_dict("install") for _ in range(2)]
    produce(broker, topics.installs, events + conversions)
    ocean = oe_partner_dict(endpoint=sandbox.oceanengine_url)
    config = write_config(tmp_path, broker, topics, sandbox.url, partner_files=(ocean,))
    expected_alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"]
                       for rule in group["rules"] if "alert" in rule}  # fmt: skip
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        owed = {event_id_of(event) for event in events}
        wait_for(lambda: set(sandbox_ids(sandbox)) >= owed, 60, "every postback delivered")
        # When Prometheus scrapes it, with the shipped alert rules loaded
        with PrometheusServer(binary, tmp_path, f"127.0.0.1:{worker.metrics_port}") as prometheus:
            wait_for(prometheus.is_ready, 30, "prometheus ready", interval_s=0.25)
            # Then the delivered postbacks show up in Prometheus
            delivered = f'sum(dispatcher_postbacks_total{{job="{JOB}", outcome="delivered"}})'
            total = len(events) + len(conversions)
            wait_for(
                lambda: prometheus.value(delivered) == total,
                30,
                f"{delivered} == {total}",
                interval_s=0.5,
            )
            assert prometheus.value(f'up{{job="{JOB}"}}') == 1
            # And every alert rule is loaded and evaluates without error
            wait_for(
                lambda: rule_states(prometheus) == dict.fromkeys(expected_alerts, "ok"),
                30,
                "every alert rule evaluated",
                interval_s=0.5,
            )
            # And a healthy worker raises none of them (not even pending)
            wait_for(
                lambda: prometheus.api("alerts")["alerts"] == [],
                15,
                "no pending or firing alerts",
                interval_s=0.5,
            )
            # And every query of the dashboard is valid PromQL for this Prometheus
            queries = list(dashboard_queries(json.loads(DASHBOARD.read_text())))
            errors = {
                where: error
                for where, expr in queries
                if (error := prometheus.query_error(grafana_to_promql(expr)))
            }
            assert errors == {}
            # And the Partner variable selects one partner's series
            dashboard = json.loads(DASHBOARD.read_text())
            [variable] = [v for v in dashboard["templating"]["list"] if v["name"] == "partner"]
            selector = variable["query"].removeprefix("label_values(").rsplit(",", 1)[0]
            partners = {
                r["metric"]["partner"] for r in prometheus.api("query", query=selector)["result"]
            }
            assert partners == {"tiktok", "oceanengine"}
            [installs] = [
                e
                for w, e in queries
                if "sum by (partner) (increase(dispatcher_postbacks" in e
                or "sum by (partner) (rate(dispatcher_postbacks_total" in e
            ][:1]
            ocean_only = grafana_to_promql(installs, "oceanengine")
            result = prometheus.api("query", query=ocean_only)["result"]
            assert [r["metric"]["partner"] for r in result] == ["oceanengine"]
        assert worker.stop() == 0
