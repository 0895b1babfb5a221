"""The Compose stack, the image and the dashboard, checked by parsing them (no Docker needed).

Each check is a function that returns the problems it finds, so the tests below can show it catches
a broken file as well as pass the real one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from dispatcher.config_loader import load_settings
from dispatcher.metrics import BatchHistogram, Metrics
from tests.pipeline import REPO

COMPOSE_FILE = REPO / "docker-compose.yml"
PRODUCTION_FILE = REPO / "docker-compose.production.yml"
DOCKERFILE = REPO / "Dockerfile"
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "postback-dispatcher.json"
JOB = "postback-dispatcher"

# ---------------------------------------------------------------------------------------------
# Metric names: what the dispatcher exports, and what a PromQL expression uses

# Sample names prometheus_client derives from a family name, by family type.
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def exported_metric_names() -> set[str]:
    """Every sample name the dispatcher's registry can expose, plus Prometheus' own `up`.

    Labelled metrics have no samples until a label set is used, so the names come from each
    family's name and type rather than from a scrape.
    """
    names = {"up"}
    for family in Metrics().registry.collect():
        names |= {family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type]}
    return names


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# A whole word that is not a function call (`rate(`) and not part of a number (`1e3`, `0.5`).
_IDENTIFIER = re.compile(r"(?<![\w.:$])[a-zA-Z_:][\w:]*(?![\w:]|\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
             "group_left", "group_right", "inf", "nan", "atan2"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (Grafana `$variables` allowed)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", text)  # Grafana variables
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _GROUPING.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le) (rate(dispatcher_x_seconds_bucket{job="a", '
        'le=~"1|2", s="{b}"}[$__rate_interval]))) / on (partner) group_left (app) '
        "up offset 5m > bool 1e3 and deriv(sum by (topic) (lag_total)[10m:1m]) > 0"
    )
    assert metric_names(expr) == {"dispatcher_x_seconds_bucket", "up", "lag_total"}


def test_exported_names_cover_what_a_scrape_shows() -> None:
    metrics = Metrics()
    metrics.start_partner("tiktok", "InstallApp")
    scraped = {s.name for family in metrics.registry.collect() for s in family.samples}
    assert scraped, "the registry exposes samples"
    assert scraped <= exported_metric_names()
    assert "dispatcher_postbacks_total" in exported_metric_names()
    assert "dispatcher_request_duration_seconds_bucket" in exported_metric_names()


# ---------------------------------------------------------------------------------------------
# Compose helpers


class MissingVariableError(Exception):
    """A `${X:?message}` (or `${X?message}`) whose variable is missing: Compose stops there."""


_REFERENCE = re.compile(r"\$\{(\w+)(?:(:?)([-?])([^}]*))?\}")


def interpolate(value: str, env: Mapping[str, str] | None = None) -> str:
    """A value as Compose resolves it with the shell environment `env` (none set by default),
    after the compose-spec's interpolation rules: `${X}`; `${X-d}` and `${X:-d}` give d when X is
    unset (with the colon: or empty); `${X?err}` and `${X:?err}` stop with err likewise."""
    shell = env or {}

    def resolve(match: re.Match[str]) -> str:
        name, colon, operator, argument = match.groups()
        found = shell.get(name)
        missing = found is None or (colon == ":" and found == "")
        if operator == "?" and missing:
            raise MissingVariableError(f"{name}: {argument}")
        if operator == "-" and missing:
            return argument
        return found or ""

    return _REFERENCE.sub(resolve, value).replace("$$", "$")


def resolve_file(node: Any, env: Mapping[str, str]) -> list[str]:
    """Every `${...}` of a Compose file resolved with `env`: the errors Compose would stop with."""
    if isinstance(node, str):
        try:
            interpolate(node, env)
        except MissingVariableError as exc:
            return [str(exc)]
        return []
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    return [error for child in children for error in resolve_file(child, env)]


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load(path.read_text())
    return compose


def raw_environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's environment, uninterpolated; None for a variable given without a value (Compose
    passes on the shell's value, or leaves the variable unset)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {str(key): None if value is None else str(value) for key, value in env.items()}


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, uninterpolated (list or mapping syntax)."""
    return {key: value or "" for key, value in raw_environment(service).items()}


def container_environment(service: dict[str, Any], shell: Mapping[str, str]) -> dict[str, str]:
    """What the container gets when Compose runs in a shell with `shell` set."""
    resolved = {}
    for key, value in raw_environment(service).items():
        if value is not None:
            resolved[key] = interpolate(value, shell)
        elif key in shell:
            resolved[key] = shell[key]
    return resolved


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Dependency → condition (short syntax means `service_started`)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def one_shot_services(compose: dict[str, Any]) -> set[str]:
    """Services others wait for to *finish* (like kafka-init): they need no health check."""
    return {
        name
        for service in compose["services"].values()
        for name, condition in depends_on(service).items()
        if condition == "service_completed_successfully"
    }


# What an operator must set for the production file (an example configuration directory).
OPERATOR_ENV = {"DISPATCHER_CONFIG_DIR": "./config", "TIKTOK_ACCESS_TOKEN": "operator-token"}


def bind_mounts(
    service: dict[str, Any], env: Mapping[str, str] = OPERATOR_ENV
) -> Iterator[tuple[str, str]]:
    """(host source, container target) of a service's bind mounts, interpolated."""
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                yield interpolate(volume["source"], env), volume["target"]
            continue
        source, target = interpolate(volume, env).split(":")[:2]
        if source.startswith((".", "/", "~")):
            yield source, target


def image_tag(image: str) -> str | None:
    """The tag of an image reference, or None without one (`name`, `registry:5000/name`)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


# ---------------------------------------------------------------------------------------------
# Compose checks: each returns its problems


def unpinned_images(compose: dict[str, Any]) -> list[str]:
    problems = []
    for name, service in compose["services"].items():
        image = service.get("image")
        if image is None:
            if "build" not in service:
                problems.append(f"{name}: neither image nor build")
            continue
        if "@sha256:" in image:
            continue
        tag = image_tag(image)
        # An exact version: no tag, `latest` or a bare major ("3", "11") would move under us.
        if tag is None or tag == "latest" or not re.search(r"\d+\.\d+", tag):
            problems.append(f"{name}: image {image!r} is not pinned to an exact version")
    return problems


def missing_healthchecks(compose: dict[str, Any]) -> list[str]:
    problems = []
    exempt = one_shot_services(compose)
    for name, service in compose["services"].items():
        check = service.get("healthcheck") or {}
        test = check.get("test")
        if name not in exempt and (check.get("disable") or not test or test[0] == "NONE"):
            problems.append(f"{name}: no health check")
    return problems


def broken_dependencies(compose: dict[str, Any]) -> list[str]:
    problems = []
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in depends_on(service).items():
            if dependency not in services:
                problems.append(f"{name}: depends on unknown service {dependency!r}")
            elif condition == "service_healthy" and "healthcheck" not in services[dependency]:
                problems.append(f"{name}: waits for {dependency} to be healthy, it has no check")
    return problems


def missing_mount_sources(compose: dict[str, Any]) -> list[str]:
    problems = []
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for source, _ in bind_mounts(service):
            if not (COMPOSE_FILE.parent / source).exists():
                problems.append(f"{name}: mounts {source}, which is not in the repository")
        for volume in service.get("volumes") or []:
            source = volume.get("source", "") if isinstance(volume, dict) else volume.split(":")[0]
            if source and not source.startswith((".", "/", "~", "$")) and source not in declared:
                problems.append(f"{name}: named volume {source!r} is not declared")
    return problems


def fixed_port_health_checks(compose: dict[str, Any]) -> list[str]:
    """The worker's health check must follow its configured metrics port: `dispatcher health`."""
    problems = []
    for name, service in compose["services"].items():
        runs_worker = "build" in service and service.get("command", ["run"])[0] == "run"
        test = (service.get("healthcheck") or {}).get("test") or []
        if runs_worker and test[1:3] != ["dispatcher", "health"]:
            problems.append(f"{name}: health check {test!r} does not use `dispatcher health`")
    return problems


SECRET_KEY = re.compile(r"TOKEN|PASSWORD|SECRET|PASSWD|API_?KEY|CREDENTIAL", re.IGNORECASE)


def inline_secrets(compose: dict[str, Any]) -> list[str]:
    """Secret-looking variables must come from the environment: the whole value a `${...}`."""
    problems = []
    for name, service in compose["services"].items():
        for key, value in raw_environment(service).items():
            passed_on = value is None or re.fullmatch(r"\$\{\w+(?::?[-?][^}]*)?\}", value)
            if SECRET_KEY.search(key) and not passed_on:
                problems.append(f"{name}: {key} is set in the file; use ${{{key}}}")
    return problems


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


CHECKS = [unpinned_images, missing_healthchecks, broken_dependencies, missing_mount_sources,
          inline_secrets, fixed_port_health_checks]  # fmt: skip


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("path", [COMPOSE_FILE, PRODUCTION_FILE], ids=lambda path: path.name)
def test_compose_file_passes(check: Any, path: Path) -> None:
    assert check(load_compose(path)) == []


@pytest.mark.parametrize(
    ("check", "service"),
    [
        (unpinned_images, {"image": "apache/kafka:latest"}),
        (unpinned_images, {"image": "prom/prometheus"}),
        (unpinned_images, {"image": "grafana/grafana:11"}),
        (unpinned_images, {"image": "registry:5000/grafana"}),
        (missing_healthchecks, {"image": "a:1.2.3"}),
        (missing_healthchecks, {"image": "a:1.2.3", "healthcheck": {"test": ["NONE"]}}),
        (broken_dependencies, {"build": ".", "depends_on": ["nowhere"]}),
        (missing_mount_sources, {"build": ".", "volumes": ["./no/such/dir:/etc/x:ro"]}),
        (missing_mount_sources, {"build": ".", "volumes": ["undeclared:/data"]}),
        (inline_secrets, {"build": ".", "environment": {"TIKTOK_ACCESS_TOKEN": "abc123"}}),
        (inline_secrets, {"build": ".", "environment": ["GF_SECURITY_ADMIN_PASSWORD=hunter2"]}),
        (
            fixed_port_health_checks,
            {
                "build": ".",
                "healthcheck": {
                    "test": [
                        "CMD",
                        "python",
                        "-c",
                        "import urllib.request; urllib.request.urlopen("
                        "'http://127.0.0.1:9108/healthz', timeout=4)",
                    ]
                },
            },
        ),
    ],
)
def test_compose_checks_catch_mistakes(check: Any, service: dict[str, Any]) -> None:
    # Given the real file with one extra, broken service
    broken = load_compose()
    broken["services"]["broken"] = service
    # Then the check reports it
    assert any(problem.startswith("broken:") for problem in check(broken))


def test_kafka_init_is_the_only_service_without_a_health_check(compose: dict[str, Any]) -> None:
    assert one_shot_services(compose) == {"kafka-init"}
    assert "healthcheck" not in compose["services"]["kafka-init"]


def test_dispatcher_configuration_points_at_the_compose_services(compose: dict[str, Any]) -> None:
    # Given the dispatcher's environment as Compose passes it, and the config directory it mounts
    service = compose["services"]["dispatcher"]
    env = {key: interpolate(value) for key, value in environment(service).items()}
    (config_dir,) = [
        source for source, target in bind_mounts(service) if target == "/etc/dispatcher"
    ]
    # When the dispatcher loads its configuration (as `dispatcher run` would)
    settings = load_settings(COMPOSE_FILE.parent / config_dir / "dispatcher.yaml", env)
    # Then Kafka and the partner endpoint are services of this file
    services = compose["services"]
    for server in settings.runtime.kafka.bootstrap_servers:
        host, port = server.rsplit(":", 1)
        assert host in services
        advertised = environment(services[host])["KAFKA_ADVERTISED_LISTENERS"]
        assert f"//{host}:{port}" in advertised
    # (both partners: the example config sends nothing to the real TikTok or Ocean Engine)
    assert {p.partner for p in settings.partners.partners} == {"tiktok", "oceanengine"}
    sandbox_command = services["partner-sandbox"]["command"]
    for partner in settings.partners.partners:
        endpoint = urlsplit(partner.endpoint)
        assert endpoint.hostname == "partner-sandbox", partner.partner
        assert sandbox_command[sandbox_command.index("--port") + 1] == str(endpoint.port)
    ocean = urlsplit(settings.partners.by_name("oceanengine").endpoint)
    assert ocean.path == "/api/v2/conversion"  # the sandbox's Ocean Engine path
    # And the metrics port is the one published (on this machine only) and scraped
    port = settings.runtime.metrics.port
    assert f"127.0.0.1:{port}:{port}" in service["ports"]


def test_every_port_is_published_on_this_machine_only(compose: dict[str, Any]) -> None:
    """Kafka without authentication, the sandbox's control API and Grafana are for this machine;
    a published port without an address would be open to its whole network."""
    published = [(name, port) for name, service in compose["services"].items()
                 for port in service.get("ports", [])]  # fmt: skip
    assert published
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_grafana_needs_an_admin_password_from_the_shell(compose: dict[str, Any]) -> None:
    password = environment(compose["services"]["grafana"])["GF_SECURITY_ADMIN_PASSWORD"]
    with pytest.raises(MissingVariableError, match="set GRAFANA_ADMIN_PASSWORD"):
        interpolate(password)
    assert interpolate(password, {"GRAFANA_ADMIN_PASSWORD": "s3cret"}) == "s3cret"


def test_kafka_init_creates_the_configured_topics_with_the_dispatcher(
    compose: dict[str, Any],
) -> None:
    """`dispatcher topics create` on the same mounted config and broker as the worker."""
    init, worker = compose["services"]["kafka-init"], compose["services"]["dispatcher"]
    command = init["command"]
    assert command[:2] == ["topics", "create"]
    assert command[command.index("--config") + 1] == "/etc/dispatcher/dispatcher.yaml"
    assert int(command[command.index("--partitions") + 1]) >= 1
    assert dict(bind_mounts(init)) == dict(bind_mounts(worker))
    assert (
        environment(init)["DISPATCHER_KAFKA__BOOTSTRAP_SERVERS"]
        == environment(worker)["DISPATCHER_KAFKA__BOOTSTRAP_SERVERS"]
    )
    assert init.get("build") == worker.get("build")  # the dispatcher's own image


# ---------------------------------------------------------------------------------------------
# Two paths: the local stack (sandbox only) and production (your Kafka, the real partners)

REAL_TIKTOK = "https://business-api.tiktok.com/open_api/v1.3/event/track/"


def partner_endpoints(compose: dict[str, Any], shell: Mapping[str, str]) -> dict[str, str]:
    """Each partner's endpoint as the dispatcher of `compose` loads it under `shell`."""
    service = compose["services"]["dispatcher"]
    env = container_environment(service, shell)
    [config_dir] = [s for s, target in bind_mounts(service, shell) if target == "/etc/dispatcher"]
    settings = load_settings(COMPOSE_FILE.parent / config_dir / "dispatcher.yaml", env)
    return {partner.partner: partner.endpoint for partner in settings.partners.partners}


@pytest.mark.parametrize(
    ("shell", "missing"),
    [
        ({}, {"DISPATCHER_CONFIG_DIR", "TIKTOK_ACCESS_TOKEN"}),
        ({"DISPATCHER_CONFIG_DIR": "./config"}, {"TIKTOK_ACCESS_TOKEN"}),
        ({"DISPATCHER_CONFIG_DIR": "./config", "TIKTOK_ACCESS_TOKEN": ""}, {"TIKTOK_ACCESS_TOKEN"}),
        ({"TIKTOK_ACCESS_TOKEN": "t"}, {"DISPATCHER_CONFIG_DIR"}),
        (OPERATOR_ENV, set()),
    ],
)
def test_production_will_not_start_without_the_token_and_your_configuration(
    shell: dict[str, str], missing: set[str]
) -> None:
    errors = resolve_file(load_compose(PRODUCTION_FILE), shell)
    assert {error.split(":")[0] for error in errors} == missing
    assert all(error.split(": ", 1)[1].startswith("set ") for error in errors)  # says what to do


def test_production_sends_to_the_endpoints_of_your_partner_files() -> None:
    # Given the production file run with the token and a configuration directory
    compose = load_compose(PRODUCTION_FILE)
    env = container_environment(compose["services"]["dispatcher"], OPERATOR_ENV)
    # Then nothing overrides the partner files' endpoints, and the token is the operator's
    assert not any(key.endswith("__ENDPOINT") for key in env)
    assert env["TIKTOK_ACCESS_TOKEN"] == "operator-token"
    files = {p.stem: yaml.safe_load(p.read_text())["endpoint"]
             for p in (REPO / "config" / "partners").glob("*.yaml")}  # fmt: skip
    assert partner_endpoints(compose, OPERATOR_ENV) == files
    assert files["tiktok"] == REAL_TIKTOK


def test_production_overrides_an_endpoint_only_when_the_operator_sets_it() -> None:
    proxy = "https://egress-proxy.internal/tiktok/open_api/v1.3/event/track/"
    shell = OPERATOR_ENV | {"DISPATCHER_PARTNERS__TIKTOK__ENDPOINT": proxy}
    endpoints = partner_endpoints(load_compose(PRODUCTION_FILE), shell)
    assert endpoints["tiktok"] == proxy
    assert urlsplit(endpoints["oceanengine"]).hostname == "analytics.oceanengine.com"


def test_the_local_stack_sends_only_to_the_sandbox_whatever_the_shell_says() -> None:
    # Given a shell set up for the real partners (the old way: endpoint variables and the token)
    shell = {"TIKTOK_ENDPOINT": REAL_TIKTOK, "TIKTOK_ACCESS_TOKEN": "real-token",
             "OCEANENGINE_ENDPOINT": "https://analytics.oceanengine.com/api/v2/conversion",
             "DISPATCHER_CONFIG_DIR": "./config"}  # fmt: skip
    compose = load_compose()
    # Then the local stack still talks to its sandbox only, and never carries the real token
    endpoints = partner_endpoints(compose, shell)
    assert {urlsplit(url).hostname for url in endpoints.values()} == {"partner-sandbox"}
    env = container_environment(compose["services"]["dispatcher"], shell)
    assert "real-token" not in env.values()


def test_prometheus_scrapes_the_dispatcher_and_loads_the_alerts(compose: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
    targets = {target for static in job["static_configs"] for target in static["targets"]}
    assert "dispatcher:9108" in targets
    assert "dispatcher" in compose["services"]
    # Every rule file sits where Prometheus looks for it: next to the mounted config file.
    mounts = dict(bind_mounts(compose["services"]["prometheus"]))
    config_target = Path(mounts["./deploy/prometheus/prometheus.yml"])
    mounted_targets = {Path(target) for target in mounts.values()}
    for rule_file in config["rule_files"]:
        assert config_target.parent / rule_file in mounted_targets
        assert (PROMETHEUS_CONFIG.parent / rule_file).is_file()


def test_grafana_provisions_the_datasource_and_the_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = dict(bind_mounts(grafana))
    (datasource,) = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    assert urlsplit(datasource["url"]).hostname in compose["services"]
    (provider,) = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "dashboards.yml").read_text()
    )["providers"]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    # Every panel queries the provisioned datasource by its fixed uid
    uids = {ref["uid"] for ref in datasource_refs(json.loads(DASHBOARD.read_text()))}
    assert uids == {datasource["uid"]}


# ---------------------------------------------------------------------------------------------
# The Dockerfile


def dockerfile_problems(text: str) -> list[str]:
    problems = []
    lines = re.sub(r"\\\n", " ", text).splitlines()
    instructions = [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for parts in (line.split(None, 1) for line in lines if line.strip() and line[0] != "#")
    ]
    for keyword, rest in instructions:
        if keyword == "FROM":
            image = rest.split()[0]
            tag = image_tag(image) or ""
            if "@sha256:" not in image and not re.search(r"\d+\.\d+\.\d+", tag):
                problems.append(f"base image {image} is not pinned to a patch version")
        if keyword == "COPY" and "--from" not in rest:
            for source in rest.split()[:-1]:
                if not (REPO / source).exists():
                    problems.append(f"COPY {source}: not in the repository")
    users = [rest.split(":")[0].strip() for keyword, rest in instructions if keyword == "USER"]
    if not users or users[-1] in {"root", "0"}:
        problems.append("the image runs as root")
    return problems


def test_dockerfile_is_pinned_and_runs_unprivileged() -> None:
    text = DOCKERFILE.read_text()
    assert dockerfile_problems(text) == []
    assert 'ENTRYPOINT ["dispatcher"]' in text
    assert "EXPOSE 9108" in text


def test_the_image_health_check_follows_the_configured_port(compose: dict[str, Any]) -> None:
    """`dispatcher health` reads the same configuration as `run` (both through DISPATCHER_CONFIG,
    where Compose mounts it) and asks /healthz on its metrics port; no port is written here."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    [healthcheck] = [line for line in text.splitlines() if line.startswith("HEALTHCHECK")]
    assert healthcheck.endswith('CMD ["dispatcher", "health"]')
    assert "9108" not in healthcheck
    assert 'CMD ["run"]' in text  # --config would part `run` from the probe's configuration
    [config] = re.findall(r"DISPATCHER_CONFIG=(\S+)", text)
    mounts = dict(
        (target, source) for source, target in bind_mounts(compose["services"]["dispatcher"])
    )
    assert Path(config).parent == Path("/etc/dispatcher")
    assert "/etc/dispatcher" in mounts


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (("FROM python:3.11.13-slim-bookworm", "FROM python:3.11-slim"), "not pinned"),
        (("FROM python:3.11.13-slim-bookworm", "FROM python:latest"), "not pinned"),
        (("USER 10001", "USER root"), "runs as root"),
        (("USER 10001", ""), "runs as root"),
        (("COPY schemas ./schemas", "COPY nowhere ./schemas"), "not in the repository"),
    ],
)
def test_dockerfile_check_catches_mistakes(edit: tuple[str, str], problem: str) -> None:
    text = DOCKERFILE.read_text()
    assert edit[0] in text
    assert any(problem in found for found in dockerfile_problems(text.replace(*edit)))


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", "tests"} <= ignored
    # ... but not what the image is built from
    assert not {"dispatcher", "schemas", "pyproject.toml", "README.md"} & ignored


# ---------------------------------------------------------------------------------------------
# The dashboard


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def datasource_refs(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in all_panels(dashboard):
        if panel["type"] != "row":
            yield panel["datasource"]
            yield from (target["datasource"] for target in panel["targets"])
    yield from (variable["datasource"] for variable in dashboard["templating"]["list"])


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and template variable."""
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        query = variable["query"]
        query = query["query"] if isinstance(query, dict) else query
        # label_values(<series selector>, <label>): only the selector is PromQL
        match = re.fullmatch(r"label_values\((.*),\s*\w+\)", query.strip())
        yield f"variable {variable['name']!r}", match.group(1) if match else query


def unknown_metrics(dashboard: dict[str, Any], known: set[str]) -> list[str]:
    return [
        f"{where}: {sorted(metric_names(expr) - known)}"
        for where, expr in dashboard_queries(dashboard)
        if metric_names(expr) - known
    ]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def test_dashboard_uses_only_metrics_the_dispatcher_exports(dashboard: dict[str, Any]) -> None:
    assert unknown_metrics(dashboard, exported_metric_names()) == []


def test_dashboard_check_catches_a_misspelt_metric(dashboard: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(dashboard).replace("dispatcher_consumer_lag", "dispatcher_lag"))
    assert unknown_metrics(broken, exported_metric_names())


def test_dashboard_shows_every_metric_family(dashboard: dict[str, Any]) -> None:
    # A metric nobody can see is a metric nobody watches: a new one needs a panel.
    used = set().union(*(metric_names(expr) for _, expr in dashboard_queries(dashboard)))
    unused = [
        family.name
        for family in Metrics().registry.collect()
        if not any(family.name + suffix in used for suffix in SAMPLE_SUFFIXES[family.type])
    ]
    assert unused == []


def test_dashboard_is_well_formed(dashboard: dict[str, Any]) -> None:
    panels = list(all_panels(dashboard))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    assert dashboard["uid"] == "postback-dispatcher"
    assert dashboard["schemaVersion"] >= 39
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"], f"{panel['title']} has a query"
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


def test_dashboard_shows_each_partner_and_filters_by_partner(dashboard: dict[str, Any]) -> None:
    """Every query on a metric with a `partner` label honours the Partner variable, and the
    variable lists the configured partners."""
    metrics = Metrics()
    types = {family.name: family.type for family in metrics.registry.collect()}
    partner_labelled = {  # the registered name and label names of each metric
        metric._name + suffix
        for metric in vars(metrics).values()
        if isinstance(metric, MetricWrapperBase | BatchHistogram)
        and "partner" in metric._labelnames
        for suffix in SAMPLE_SUFFIXES[types[metric._name.removesuffix("_total")]]
    }
    assert {"dispatcher_postbacks_total", "dispatcher_decisions_total",
            "dispatcher_event_to_postback_seconds_bucket",
            "dispatcher_revenue_unsent_total"} <= partner_labelled  # fmt: skip
    missing = [
        where
        for where, expr in dashboard_queries(dashboard)
        if metric_names(expr) & partner_labelled and 'partner=~"$partner"' not in expr
        and not where.startswith("variable")
    ]  # fmt: skip
    assert missing == []
    [variable] = [v for v in dashboard["templating"]["list"] if v["name"] == "partner"]
    assert variable["query"].endswith(", partner)")
    assert {"tiktok", "oceanengine"} <= set(dashboard["tags"])
