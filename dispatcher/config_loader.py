"""Loading configuration: YAML files + `DISPATCHER_...` environment overrides → frozen models.

Every problem is collected and reported with its file, the path inside it and what is allowed;
the process stops before consuming anything. The environment is read only through the mapping
the entry point passes in.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from dispatcher.errors import ConfigError, ConfigIssue
from dispatcher.inputs import DECODERS
from dispatcher.partners import config_model_for
from dispatcher.partners import names as partner_names
from schemas.config import PartnerConfig, RuntimeConfig

ENV_PREFIX = "DISPATCHER_"
ENV_SEPARATOR = "__"
PARTNERS_ENV_KEY = "PARTNERS"
CONFIG_PATH_ENV = "DISPATCHER_CONFIG"


@dataclass(frozen=True)
class PartnerSet:
    """The partner files as loaded together: reloaded as one on SIGHUP."""

    partners: tuple[PartnerConfig, ...]
    tokens: Mapping[str, SecretStr] = field(repr=False)
    files: Mapping[str, Path]
    # Partner → the file its token is read from (`access_token_file`), watched while running.
    token_files: Mapping[str, Path] = field(default_factory=lambda: types.MappingProxyType({}))
    # Partner → the secret its request bodies are signed with (`signing_secret_env`), if any.
    signing_secrets: Mapping[str, SecretStr] = field(
        default_factory=lambda: types.MappingProxyType({}), repr=False
    )

    def with_token(self, name: str, token: SecretStr) -> PartnerSet:
        """This set with partner `name`'s token replaced (its token file changed)."""
        tokens = types.MappingProxyType({**self.tokens, name: token})
        return replace(self, tokens=tokens)

    def by_name(self, name: str) -> PartnerConfig:
        """The partner config called `name`."""
        for partner in self.partners:
            if partner.name == name:
                return partner
        raise KeyError(name)

    def secrets(self) -> list[str]:
        """Every secret value, for the log redactor."""
        return [
            secret.get_secret_value()
            for secret in (*self.tokens.values(), *self.signing_secrets.values())
        ]


@dataclass(frozen=True)
class Settings:
    """Everything the worker needs, validated."""

    path: Path
    runtime: RuntimeConfig
    partners_dir: Path
    partners: PartnerSet
    kafka_password: SecretStr | None = field(default=None, repr=False)

    def secrets(self) -> list[str]:
        """Every secret value, for the log redactor."""
        values = self.partners.secrets()
        if self.kafka_password is not None:
            values.append(self.kafka_password.get_secret_value())
        return values


def load_settings(
    path: Path, environ: Mapping[str, str], *, require_secrets: bool = True
) -> Settings:
    """Load `dispatcher.yaml` and its partner files; raise ConfigError listing every problem."""
    issues: list[ConfigIssue] = []
    data, runtime = _read_runtime(path, environ, issues)
    # Partner files are checked even when dispatcher.yaml is wrong, so every error shows at once.
    partners_dir_value = data.get("partners_dir", "partners")
    if not isinstance(partners_dir_value, str):
        raise ConfigError(issues)
    # Relative to dispatcher.yaml, written as the path it was given is (relative stays relative),
    # so every message names files the same way.
    partners_dir = Path(os.path.normpath(path.parent / partners_dir_value))
    partners = _load_partners(partners_dir, environ, issues, require_secrets=require_secrets)
    if runtime is None:
        raise ConfigError(issues)
    for key, name in runtime.kafka.formats:
        if name not in DECODERS:
            issues.append(
                ConfigIssue(
                    str(path),
                    f"kafka.formats.{key}",
                    f"{name!r} is not a known input format; allowed: {', '.join(DECODERS)}",
                )
            )
    kafka_password = None
    if runtime.kafka.sasl_password_env:
        kafka_password = _secret(
            environ, runtime.kafka.sasl_password_env, str(path), "kafka.sasl_password_env",
            "the Kafka SASL password", issues, required=require_secrets,
        )  # fmt: skip
    if issues or partners is None:
        raise ConfigError(issues)
    return Settings(path, runtime, partners_dir, partners, kafka_password)


def load_runtime(path: Path, environ: Mapping[str, str]) -> RuntimeConfig:
    """`dispatcher.yaml` alone, with its environment overrides (no partner file, no secret):
    what a health probe needs, unaffected by a partner file being edited."""
    issues: list[ConfigIssue] = []
    _, runtime = _read_runtime(path, environ, issues)
    if issues or runtime is None:
        raise ConfigError(issues)
    return runtime


def _read_runtime(
    path: Path, environ: Mapping[str, str], issues: list[ConfigIssue]
) -> tuple[dict[str, Any], RuntimeConfig | None]:
    """`dispatcher.yaml` as read and as validated with its environment overrides (None when
    invalid; `issues` says why). ConfigError when the file cannot be read as YAML at all."""
    data = _read_yaml(path, issues)
    if data is None:
        raise ConfigError(issues)
    overridden = _apply_overrides(data, _runtime_overrides(environ), str(path), issues)
    return data, _validate(RuntimeConfig, data, str(path), overridden, issues)


def load_partners(
    partners_dir: Path, environ: Mapping[str, str], *, require_secrets: bool = True
) -> PartnerSet:
    """Load every partner file of a directory (start-up and SIGHUP reloads)."""
    issues: list[ConfigIssue] = []
    partners = _load_partners(partners_dir, environ, issues, require_secrets=require_secrets)
    if issues or partners is None:
        raise ConfigError(issues)
    return partners


def _load_partners(
    partners_dir: Path,
    environ: Mapping[str, str],
    issues: list[ConfigIssue],
    *,
    require_secrets: bool,
) -> PartnerSet | None:
    if not partners_dir.is_dir():
        issues.append(ConfigIssue(str(partners_dir), "", "partners directory does not exist"))
        return None
    files = sorted([*partners_dir.glob("*.yaml"), *partners_dir.glob("*.yml")])
    if not files:
        issues.append(
            ConfigIssue(str(partners_dir), "", "no partner files (*.yaml) in this directory")
        )
        return None
    partners: list[PartnerConfig] = []
    tokens: dict[str, SecretStr] = {}
    token_files: dict[str, Path] = {}
    signing_secrets: dict[str, SecretStr] = {}
    sources: dict[str, Path] = {}
    for file in files:
        data = _read_yaml(file, issues)
        if data is None:
            continue
        name = data.get("partner")
        model = config_model_for(name) if isinstance(name, str) else None
        if model is None or not isinstance(name, str):
            issues.append(
                ConfigIssue(
                    str(file),
                    "partner",
                    f"{name!r} is not a known partner; allowed: {', '.join(partner_names())}",
                )
            )
            continue
        if name in sources:
            issues.append(
                ConfigIssue(
                    str(file), "partner", f"{name!r} is already configured in {sources[name]}"
                )
            )
            continue
        sources[name] = file
        overrides = _partner_overrides(environ, name)
        overridden = _apply_overrides(data, overrides, str(file), issues)
        partner = _validate(model, data, str(file), overridden, issues)
        # The token is checked even when the file is invalid, so every problem shows at once.
        token_env = data.get("access_token_env", model.model_fields["access_token_env"].default)
        token_file = data.get("access_token_file")
        if isinstance(token_file, str) and token_file.strip():
            if data.get("access_token_env") is None:  # both: the model reports it
                path = token_file_path(file, token_file)
                token_files[name] = path
                token = _token_from_file(
                    path, str(file), f"the {name} access token", issues, required=require_secrets
                )
                if token is not None:
                    tokens[name] = token
        elif isinstance(token_env, str):
            token = _secret(
                environ, token_env, str(file), "access_token_env",
                f"the {name} access token", issues, required=require_secrets,
            )  # fmt: skip
            if token is not None:
                tokens[name] = token
        signing_env = data.get("signing_secret_env")
        if isinstance(signing_env, str):
            signing = _secret(
                environ, signing_env, str(file), "signing_secret_env",
                f"the {name} signing secret", issues, required=require_secrets,
            )  # fmt: skip
            if signing is not None:
                signing_secrets[name] = signing
        if partner is not None:
            partners.append(partner)
    _check_partner_overrides(environ, sources, partners_dir, issues)
    if not partners:
        return None
    return PartnerSet(
        tuple(partners), types.MappingProxyType(tokens), types.MappingProxyType(sources),
        types.MappingProxyType(token_files), types.MappingProxyType(signing_secrets),
    )  # fmt: skip


def token_file_path(partner_file: Path, value: str) -> Path:
    """Where `access_token_file` points; a relative path is read from the partner file's folder."""
    return Path(os.path.normpath(partner_file.parent / value.strip()))


def read_token_file(path: Path) -> SecretStr | None:
    """The token a file holds (its trailing newline and spaces stripped); None when it is
    empty. OSError when it cannot be read."""
    value = path.read_text(encoding="utf-8").strip()
    return SecretStr(value) if value else None


def _token_from_file(
    path: Path, file: str, what: str, issues: list[ConfigIssue], *, required: bool
) -> SecretStr | None:
    try:
        token = read_token_file(path)
    except (OSError, UnicodeDecodeError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if required:
            issues.append(
                ConfigIssue(
                    file, "access_token_file", f"cannot read {path}: {problem}; it must hold {what}"
                )
            )
        return None
    if token is None and required:
        issues.append(
            ConfigIssue(file, "access_token_file", f"{path} is empty; it must hold {what}")
        )
    return token


def _secret(
    environ: Mapping[str, str],
    name: str,
    file: str,
    path: str,
    what: str,
    issues: list[ConfigIssue],
    *,
    required: bool,
) -> SecretStr | None:
    raw = environ.get(name)
    value = (raw or "").strip()
    if value:
        return SecretStr(value)
    if required:
        state = "is not set" if raw is None else "is set but empty"
        issues.append(
            ConfigIssue(file, path, f"environment variable {name} {state}; it must hold {what}")
        )
    return None


def _read_yaml(path: Path, issues: list[ConfigIssue]) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        issues.append(ConfigIssue(str(path), "", f"cannot read: {exc.strerror or exc}"))
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        issues.append(ConfigIssue(str(path), where, f"not valid YAML: {problem}"))
        return None
    if not isinstance(data, dict):
        issues.append(
            ConfigIssue(str(path), "", f"must be a mapping of keys, not {type(data).__name__}")
        )
        return None
    return data


# ---------------------------------------------------------------------------------------------
# Environment overrides: DISPATCHER_KAFKA__BOOTSTRAP_SERVERS=..., DISPATCHER_PARTNERS__TIKTOK__...


def _runtime_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    return {
        key: value
        for key, value in environ.items()
        if key.startswith(ENV_PREFIX)
        and key != CONFIG_PATH_ENV
        and not key.startswith(f"{ENV_PREFIX}{PARTNERS_ENV_KEY}{ENV_SEPARATOR}")
    }


def _check_partner_overrides(
    environ: Mapping[str, str],
    loaded: Mapping[str, Path],
    partners_dir: Path,
    issues: list[ConfigIssue],
) -> None:
    """An override of a partner no file names (a misspelt `TIKTOCK`) is an error, not a no-op."""
    prefix = f"{ENV_PREFIX}{PARTNERS_ENV_KEY}{ENV_SEPARATOR}"
    names = {name.upper() for name in loaded}
    for key in sorted(environ):
        if not key.startswith(prefix):
            continue
        partner = key.removeprefix(prefix).split(ENV_SEPARATOR, 1)[0]
        if partner not in names:
            allowed = ", ".join(f"{prefix}{name}{ENV_SEPARATOR}..." for name in sorted(names))
            issues.append(
                ConfigIssue(
                    key,
                    "",
                    f"overrides partner {partner.lower()!r}, which no file in {partners_dir} "
                    f"configures; allowed: {allowed or 'none (no partner file loaded)'}",
                )
            )


def _partner_overrides(environ: Mapping[str, str], partner: str) -> dict[str, str]:
    prefix = f"{ENV_PREFIX}{PARTNERS_ENV_KEY}{ENV_SEPARATOR}{partner.upper()}{ENV_SEPARATOR}"
    return {key: value for key, value in environ.items() if key.startswith(prefix)}


def env_path(key: str) -> list[str]:
    """The config path an override variable names, e.g. ['kafka', 'bootstrap_servers']."""
    body = key.removeprefix(ENV_PREFIX)
    parts = body.split(ENV_SEPARATOR)
    if parts[0] == PARTNERS_ENV_KEY:
        parts = parts[2:]
    return [part.lower() for part in parts]


def _apply_overrides(
    data: dict[str, Any], overrides: Mapping[str, str], file: str, issues: list[ConfigIssue]
) -> dict[str, str]:
    """Set each override in `data`; return config path → the variable that set it."""
    applied: dict[str, str] = {}
    for key in sorted(overrides):
        path = env_path(key)
        if not path or any(not part for part in path):
            issues.append(ConfigIssue(file, key, "malformed override variable name"))
            continue
        try:
            value = yaml.safe_load(overrides[key])
        except yaml.YAMLError:
            value = overrides[key]
        try:
            _set_path(data, path, value)
        except (KeyError, IndexError, TypeError) as exc:
            issues.append(
                ConfigIssue(file, _format_loc(path), f"cannot apply {key}: {exc.args[0]}")
            )
            continue
        applied[_format_loc(path)] = key
    return applied


def _set_path(data: Any, path: list[str], value: Any) -> None:
    node = data
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        if isinstance(node, list):
            if not part.isdigit():
                raise TypeError(f"{_format_loc(path[:depth])} is a list; use an index")
            index = int(part)
            if index >= len(node):
                raise IndexError(f"{_format_loc(path[:depth])} has {len(node)} entries")
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise TypeError(f"{_format_loc(path[:depth])} is not a mapping")


# ---------------------------------------------------------------------------------------------
# Validation and error wording


M = typing.TypeVar("M", bound=BaseModel)


def _validate(
    model: type[M],
    data: dict[str, Any],
    file: str,
    overridden: Mapping[str, str],
    issues: list[ConfigIssue],
) -> M | None:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc = [part for part in error["loc"] if not _is_internal_loc(part)]
            path = _format_loc(loc)
            message = _describe(model, loc, error["type"], error["msg"], error.get("input"))
            setter = next(
                (var for cfg, var in overridden.items() if _is_within(path, cfg)),
                None,
            )
            if setter:
                message += f" (set by environment variable {setter})"
            issues.append(ConfigIssue(file, path, message))
        return None


def _is_within(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((f"{prefix}.", f"{prefix}["))


def _is_internal_loc(part: str | int) -> bool:
    # pydantic names validator wrappers in locations, e.g. "function-after[...]"
    return isinstance(part, str) and ("[" in part or part in {"tagged-union"})


def _format_loc(loc: list[str | int] | list[str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int) or (isinstance(part, str) and part.isdigit()):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _describe(
    model: type[BaseModel], loc: list[str | int], kind: str, message: str, value: object
) -> str:
    message = message.removeprefix("Value error, ")
    if kind == "extra_forbidden":
        allowed = _field_names(model, loc[:-1])
        return f"unknown key; allowed: {', '.join(allowed)}" if allowed else "unknown key"
    if kind == "missing":
        return "required, but missing"
    if kind in {"model_type", "dict_type"}:
        allowed = _field_names(model, loc)
        return (
            f"must be a mapping with keys {', '.join(allowed)}, not {type(value).__name__}"
            if allowed
            else message
        )
    if kind.startswith(("greater", "less")):
        bounds = _allowed_range(model, loc)
        if bounds:
            return f"{value!r} is out of range; allowed: {bounds}"
    if kind.endswith("_type") or kind.endswith("_parsing") or kind.startswith(("greater", "less")):
        return f"{message} (got {value!r})"
    return message


def _allowed_range(model: type[BaseModel], loc: list[str | int]) -> str:
    """A numeric field's bounds as an operator reads them (`0 to 65535`), or ""."""
    parent = _model_at(model, loc[:-1])
    info = parent.model_fields.get(str(loc[-1])) if parent is not None and loc else None
    if info is None:
        return ""
    bounds = {
        name: getattr(item, name)
        for item in info.metadata
        for name in ("ge", "gt", "le", "lt")
        if getattr(item, name, None) is not None
    }
    if "ge" in bounds and "le" in bounds:
        if bounds["ge"] == bounds["le"]:
            return f"only {bounds['ge']}"
        return f"{bounds['ge']} to {bounds['le']}"
    words = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}
    return " and ".join(f"{words[name]} {value}" for name, value in bounds.items())


def _field_names(model: type[BaseModel], loc: list[str | int]) -> list[str]:
    target = _model_at(model, loc)
    return list(target.model_fields) if target else []


def _model_at(model: type[BaseModel], loc: list[str | int]) -> type[BaseModel] | None:
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        info = current.model_fields.get(part)
        current = _model_in(info.annotation) if info else None
    return current


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for candidate in _walk_annotation(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _walk_annotation(annotation: Any) -> Iterator[Any]:
    yield annotation
    for arg in typing.get_args(annotation):
        yield from _walk_annotation(arg)
