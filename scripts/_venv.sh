# Sourced by the scripts: make sure .venv exists and has the project with the extras the
# script needs (reinstalled when pyproject.toml changes).
pick_python() {
  for candidate in "${PYTHON:-}" python3.11 python3 python3.12 python3.13; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "unipost_connect needs Python 3.11 or newer on PATH (or PYTHON=/path/to/python)." >&2
  return 1
}

# ensure_venv [extras]: the project installed in .venv with those extras (default: the
# test, dev and bench toolchain), reinstalled when pyproject.toml changes. The demo asks
# for "demo" only; a venv that already has the full toolchain has the demo's too.
ensure_venv() {
  local extras="${1:-test,dev,bench}"
  if [ ! -x .venv/bin/python ]; then
    "$(pick_python)" -m venv .venv
  fi
  local stamp=.venv/.installed
  if [ "$extras" = demo ] && [ -f "$stamp" ] && [ ! pyproject.toml -nt "$stamp" ]; then
    return 0
  fi
  [ "$extras" = demo ] && stamp=.venv/.installed-demo
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[$extras]"
    touch "$stamp"
  fi
}

# pyenv keeps other interpreters out of PATH unless selected; put them on it so nox
# finds python3.12 and python3.13 when the machine has them.
add_pyenv_interpreters() {
  local root
  root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
  for dir in "$root"/versions/3.1[1-3]*/bin; do
    [ -d "$dir" ] && PATH="$PATH:$dir"
  done
  export PATH
}
