# Sourced by scripts/check and scripts/demo: make ./.venv and install the project into it.
#   ensure_venv EXTRA   (EXTRA: the pyproject extra to install, e.g. dev or local)
# Says what it does (the first run takes a minute), and recovers from a .venv without pip (left
# by a `python3 -m venv` that had no ensurepip), which would otherwise break every later run.

PYTHON=${PYTHON:-python3}

_venv_hint() {
  echo "  On Debian or Ubuntu: apt-get install python3-venv (venv there comes without ensurepip);" >&2
  echo "  or run with PYTHON=/path/to/another/python3. Then run this again." >&2
}

_make_venv() {
  echo "setting up ./.venv with $PYTHON (first run only) ..." >&2
  if ! "$PYTHON" -m venv .venv; then
    rm -rf .venv   # a half-made .venv would be taken for a good one next time
    echo "error: could not create ./.venv with $PYTHON" >&2
    _venv_hint
    exit 1
  fi
}

# The file that says EXTRA was installed for this pyproject.toml (a changed one, new
# dependencies among them, needs installing again).
_stamp() {
  echo ".venv/.installed-$1-$(sha1sum < pyproject.toml | cut -c1-12)"
}

# True when ./.venv has the project with EXTRA installed for this pyproject.toml.
venv_installed() {
  [ -x .venv/bin/python ] && [ -f "$(_stamp "$1")" ]
}

ensure_venv() {
  local extra=$1 stamp
  if [ ! -x .venv/bin/python ]; then
    _make_venv
  elif ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    echo "./.venv has no pip (made by a python3 -m venv without ensurepip?): making it again" >&2
    rm -rf .venv
    _make_venv
  fi
  stamp=$(_stamp "$extra")
  if [ ! -f "$stamp" ]; then
    echo "installing the project and its '$extra' tools into ./.venv (about a minute) ..." >&2
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[$extra]"
    rm -f .venv/.installed-"$extra"-* && touch "$stamp"
    echo "installed." >&2
  fi
}
