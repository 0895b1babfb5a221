"""pyproject.toml in the forms current setuptools reads without a deprecation warning."""

from __future__ import annotations

import re
import tomllib

from tests.pipeline import REPO


def test_license_is_an_spdx_expression_and_the_build_backend_can_read_it() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    # The table form ({text = ...}) is deprecated; the string form needs setuptools >= 77.
    assert project["project"]["license"] == "Apache-2.0"
    [setuptools] = [r for r in project["build-system"]["requires"] if r.startswith("setuptools")]
    minimum = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", setuptools)
    assert minimum is not None, setuptools
    assert int(minimum.group(1)) >= 77
