#!/usr/bin/env bash
# The test command: set up the system packages, build, run the engine tests (XCTest), then the
# server tests (pytest, with redis-py and redis-cli as real clients against the real binary), then
# fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
Tools/setup.sh
swift build --build-tests
swift test --skip-build
# Python clients for the server tests, in virtual environments under .build/ (not committed).
[ -x .build/py/bin/pytest ] && .build/py/bin/python -c "import prometheus_client" 2>/dev/null || { python3 -m venv .build/py && .build/py/bin/pip install -q "redis>=6,<9" pytest prometheus_client; }
[ -x .build/py-redis5/bin/python ] || { python3 -m venv .build/py-redis5 && .build/py-redis5/bin/pip install -q "redis>=5,<6"; }
LOOKALIKE_BIN="$(swift build --show-bin-path)" .build/py/bin/pytest -q Tests/server
# Signals and restarts once more against the release build: the optimizer changes lifetimes
# (a release build once ignored SIGTERM while the debug build passed).
swift build -c release --product lookalike-server
LOOKALIKE_BIN="$(swift build -c release --show-bin-path)" .build/py/bin/pytest -q Tests/server -k "sigterm or shutdown or sigkill"
# Fuzzing (Docs/fuzzing.md): the libFuzzer targets, FUZZ_SECONDS (default 60) each, built in
# .build-fuzz; fails on a crash and keeps the input.
Tools/fuzz.sh
