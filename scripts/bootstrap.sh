# Sourced by scripts/demo and scripts/test: a project virtualenv with the pinned requirements.
# Re-installs only when a requirements file changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "omnistock needs Python 3.11 or newer as '$PYTHON' (set PYTHON=...)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
want="$1"  # requirements file to install
stamp=".venv/.installed-$(basename "$want")"
digest="$(cat requirements*.txt | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
  echo "installing $want into .venv ..."
  for args in "-r $want"; do
    # shellcheck disable=SC2086  # args are two words on purpose
    if ! .venv/bin/python -m pip install --quiet --disable-pip-version-check $args > .venv/pip.log 2>&1; then
      # This machine's pip config names local mirrors that may be absent; pip warns once per package.
      grep -v '^WARNING: Location' .venv/pip.log >&2
      echo "pip install $args failed" >&2
      exit 1
    fi
  done
  echo "$digest" > "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
