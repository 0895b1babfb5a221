"""`access_token_file`: a partner's token read from a file (a mounted Kubernetes Secret)
instead of the environment; errors name the file, the path and what is allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dispatcher.config_loader import load_partners, load_settings, read_token_file
from dispatcher.errors import ConfigError
from tests.factories import partner_dict
from tests.test_config import write_config


def token_file_partner(path: str) -> dict[str, Any]:
    """A TikTok partner file naming a token file (and no token variable)."""
    partner = partner_dict(access_token_file=path)
    del partner["access_token_env"]
    return partner


def issues(config: Path, environ: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ or {})
    return [(Path(i.file).name, i.path, i.message) for i in caught.value.issues]


def test_the_token_is_read_from_the_file_without_its_trailing_newline(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("file-token-42\n")
    config = write_config(tmp_path, token_file_partner(str(token)))
    # (no TIKTOK_ACCESS_TOKEN in the environment: the file is the token's only source)
    settings = load_settings(config, {})
    assert settings.partners.tokens["tiktok"].get_secret_value() == "file-token-42"
    assert settings.partners.token_files == {"tiktok": token.resolve()}
    assert "file-token-42" in settings.secrets()  # redacted from logs like any token


def test_a_relative_token_file_is_read_beside_the_partner_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, token_file_partner("secrets/token"))
    (tmp_path / "partners" / "secrets").mkdir()
    (tmp_path / "partners" / "secrets" / "token").write_text("relative-token")
    settings = load_settings(config, {})
    assert settings.partners.tokens["tiktok"].get_secret_value() == "relative-token"


def test_token_env_and_token_file_together_is_an_error_naming_both(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    partner = partner_dict(access_token_env="TIKTOK_ACCESS_TOKEN", access_token_file=str(token))
    [(file, path, message)] = issues(write_config(tmp_path, partner), {"TIKTOK_ACCESS_TOKEN": "x"})
    assert (file, path) == ("tiktok.yaml", "access_token_file")
    assert "access_token_env and access_token_file are both set; allowed: one of them" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "cannot read"), ("", "is empty"), ("\n  \n", "is empty")],
    ids=["missing", "empty", "blank"],
)
def test_a_missing_or_empty_token_file_is_a_config_error(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    token = tmp_path / "token"
    if content is not None:
        token.write_text(content)
    [(file, path, message)] = issues(write_config(tmp_path, token_file_partner(str(token))))
    assert (file, path) == ("tiktok.yaml", "access_token_file")
    assert str(token) in message
    assert expected in message
    assert "it must hold the tiktok access token" in message


def test_check_config_without_secrets_does_not_need_the_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, token_file_partner(str(tmp_path / "absent")))
    settings = load_settings(config, {}, require_secrets=False)
    assert "tiktok" not in settings.partners.tokens


def test_a_reload_reads_the_file_again(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first")
    write_config(tmp_path, token_file_partner(str(token)))
    assert load_partners(tmp_path / "partners", {}).tokens["tiktok"].get_secret_value() == "first"
    token.write_text("second\n")
    assert load_partners(tmp_path / "partners", {}).tokens["tiktok"].get_secret_value() == "second"


def test_read_token_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(" abc \r\n")
    secret = read_token_file(token)
    assert secret is not None
    assert secret.get_secret_value() == "abc"
    token.write_text("")
    assert read_token_file(token) is None
    with pytest.raises(FileNotFoundError):
        read_token_file(tmp_path / "absent")
