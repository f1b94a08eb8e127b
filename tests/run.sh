#!/usr/bin/env bash
# The test command: sets up .venv with the test requirements, then runs the whole suite.
# Extra arguments go to pytest (e.g. `bash tests/run.sh -k mel`).
set -euo pipefail
cd "$(dirname "$0")/.."
# requirements-ray.txt and requirements-live.txt: the Ray backend's tests (tests/test_ray.py) and the live
# presenter's (tests/test_live.py) run here too.
./start_app.sh --install-only tests/requirements.txt requirements-ray.txt requirements-live.txt
# The browser test needs Debian's Chromium (Playwright's own browser download needs the internet) and a CJK font
# for the Chinese screenshots. (grep reads all of fc-list's output: with -q it stopped at the first match,
# fc-list died of SIGPIPE, and under pipefail the font counted as missing, so apt-get ran again.)
if ! command -v chromium >/dev/null || ! fc-list 2>/dev/null | grep -i "wqy\|noto sans cjk" >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        echo "Installing chromium and a CJK font for the browser test..." >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-zenhei >/dev/null
    else
        echo "the browser test needs: sudo apt-get install chromium fonts-wqy-zenhei" >&2
        exit 1
    fi
fi
# Tests marked `alone` (the live presenter, which speaks in real time; the memory test) run first, in one
# process with the CPU to themselves: beside another test the live sound broke up, and run after the others one
# frame came late (the machine as they left it). Then two test processes share the cores, a test file each at a
# time (pytest-xdist): while one waits on a page, a Ray timeout or a subprocess the other computes (about 26
# minutes on this 2-core machine at the end of 2026-12-07; one process took far longer, three were no faster:
# bench/RESULTS.md, "The test suite's time"). HEYGEM_TEST_WORKERS=1 runs everything in one process.
workers="${HEYGEM_TEST_WORKERS:-2}"
case " $* " in *" -m "*) workers=1 ;; esac  # a marker expression of the caller's own: one run, as asked
set +e
if [ "$workers" -gt 1 ]; then
    .venv/bin/python -m pytest -m alone "$@"
    alone=$?
    .venv/bin/python -m pytest -n "$workers" --dist loadfile -m "not alone" "$@"
    shared=$?
else
    .venv/bin/python -m pytest "$@"
    shared=$?
    alone=5
fi
set -e
# pytest's 5: it collected no tests. One of the two runs may find none (`-k mel`); both finding none fails.
if [ "$shared" -eq 5 ] && [ "$alone" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here, not a pass" >&2
    exit 1
fi
for status in "$alone" "$shared"; do
    if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then
        exit "$status"
    fi
done
exit 0
