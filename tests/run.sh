#!/usr/bin/env bash
# The test command: sets up .venv with the test requirements, then runs the whole suite.
# Extra arguments go to pytest (e.g. `bash tests/run.sh -k mel`).
set -euo pipefail
cd "$(dirname "$0")/.."
./start_app.sh --install-only tests/requirements.txt
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here, not a pass" >&2
    exit 1
fi
exit "$status"
