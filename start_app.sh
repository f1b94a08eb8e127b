#!/usr/bin/env bash
# Sets up HeyGem in a local virtual environment (.venv; once, and again whenever the requirements change),
# then runs it (see README.md):
#   ./start_app.sh [--host H --port P --auth USER:PASSWORD]    the studio (web UI + HTTP API), prints its URL
#   ./start_app.sh generate --audio speech.wav --video talk.mp4  the command line
#   ./start_app.sh --ray auto|ADDRESS [--workers N]             the studio, its jobs run by Ray workers (README:
#                                                                "Many GPUs, many machines"; installs Ray the first time)
#   ./start_app.sh --live [...]                                 the studio with live presenters (README: "Live
#                                                                presenter"; installs aiortc the first time)
#   ./start_app.sh --install-only [REQUIREMENTS...]              only sets up (the test runner uses this)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv

install() {
    local requirements=${1:-requirements.txt}
    # Python 3.11: the face detector's wheel (yuface) and this machine's torch wheel are built for it.
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
        echo "HeyGem needs Python 3.11 (found: $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
        exit 1
    fi
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    # Re-install only when a requirements file changed since the last successful install.
    local stamp="$VENV/.installed-${requirements//\//-}"
    local digest
    digest=$(cat requirements.txt requirements-nodeps.txt "$requirements" | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
        echo "Installing HeyGem's packages into $VENV (first run takes a few minutes)..." >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
        echo "$digest" > "$stamp"
    fi
}

if [ "${1:-}" = "--install-only" ]; then
    shift
    for requirements in "${@:-requirements.txt}"; do
        install "$requirements"
    done
    exit 0
fi
install requirements.txt
# Ray is an optional install of its own: only once the studio is asked to use it.
for arg in "$@"; do
    case "$arg" in
        --ray|--ray=*) install requirements-ray.txt ;;
        --live) install requirements-live.txt ;;
    esac
done
# --live is this script's own word (the studio serves live sessions whenever aiortc is installed).
args=()
for arg in "$@"; do
    [ "$arg" = "--live" ] || args+=("$arg")
done
set -- "${args[@]+"${args[@]}"}"
mkdir -p outputs logs checkpoints
if [ "${1:-}" = "generate" ]; then
    exec "$VENV/bin/python" -m heygem "$@"
fi
exec "$VENV/bin/python" app.py "$@"
