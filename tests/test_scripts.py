"""scripts/check and scripts/demo set up ./.venv: they say what they do, and a .venv without pip
(what a `python3 -m venv` lacking ensurepip leaves behind) is made again instead of breaking every
later run. Run on a copy of the scripts with a stand-in python3 whose venv has no ensurepip, so
nothing is installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipeline import REPO

# Like Debian's python3 without python3-venv: `-m venv` makes the directory and its python, then
# fails for want of ensurepip.
NO_ENSUREPIP = """#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin" && printf '#!/bin/sh\\nexit 1\\n' > "$3/bin/python" && chmod +x "$3/bin/python"
  echo "Error: ensurepip is not available" >&2
  exit 1
fi
exec python3 "$@"
"""


def copy_of_the_scripts(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    for name in ("venv.sh", "check", "demo"):
        shutil.copy2(REPO / "scripts" / name, tmp_path / "scripts" / name)
    shutil.copy2(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    python = tmp_path / "python3-without-ensurepip"
    python.write_text(NO_ENSUREPIP)
    python.chmod(0o755)
    return python


def run(tmp_path: Path, script: str, python: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tmp_path / "scripts" / script)], cwd=tmp_path, env={"PATH": "/usr/bin:/bin",
        "PYTHON": str(python)}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("script", ["check", "demo"])
def test_the_first_run_says_what_it_does_and_leaves_no_half_made_venv(
    tmp_path: Path, script: str
) -> None:
    python = copy_of_the_scripts(tmp_path)
    result = run(tmp_path, script, python)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"setting up ./.venv with {python} (first run only) ..."
    assert "apt-get install python3-venv" in result.stderr
    assert not (tmp_path / ".venv").exists()  # so the next run starts over


@pytest.mark.parametrize("script", ["check", "demo"])
def test_a_venv_without_pip_is_made_again(tmp_path: Path, script: str) -> None:
    # Given a ./.venv without pip, left by an earlier attempt
    python = copy_of_the_scripts(tmp_path)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / ".venv")],
                   check=True, timeout=60)  # fmt: skip
    # When the script runs again
    result = run(tmp_path, script, python)
    # Then it says so and makes it again (which here fails, with the way out)
    assert result.stderr.splitlines()[0].startswith("./.venv has no pip")
    assert "making it again" in result.stderr
    assert "setting up ./.venv" in result.stderr
    assert "apt-get install python3-venv" in result.stderr
    assert result.returncode == 1


# A .venv that looks set up: its python runs anything but has no pip (so nothing can be
# installed here), and `dispatcher` says it ran.
STAND_IN_PYTHON = """#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then exit 1; fi
exit 0
"""


@pytest.mark.parametrize("installed_for_this_pyproject", [True, False])
def test_the_demo_installs_again_after_pyproject_changed(
    tmp_path: Path, installed_for_this_pyproject: bool
) -> None:
    """A .venv set up before a dependency was added still imports the project; only the stamp
    of the pyproject.toml it was installed for tells it is out of date."""
    # Given a .venv set up by scripts/check, for this pyproject.toml or an earlier one
    python = copy_of_the_scripts(tmp_path)
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in (("python", STAND_IN_PYTHON), ("dispatcher", "#!/bin/sh\necho demo ran\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    digest = subprocess.run(["sha1sum"], input=(tmp_path / "pyproject.toml").read_bytes(),
                            capture_output=True, check=True).stdout.decode()[:12]  # fmt: skip
    stamp = digest if installed_for_this_pyproject else "0" * 12
    (tmp_path / ".venv" / f".installed-dev-{stamp}").touch()
    # When the demo runs
    result = run(tmp_path, "demo", python)
    # Then it runs at once when the install is current, and sets up again when it is not
    if installed_for_this_pyproject:
        assert (result.returncode, result.stdout) == (0, "demo ran\n")
    else:
        assert result.stderr.splitlines()[0].startswith("./.venv has no pip")
        assert result.returncode == 1
