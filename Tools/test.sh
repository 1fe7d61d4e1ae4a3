#!/usr/bin/env bash
# The test command: set up the system packages, then build and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
Tools/setup.sh
swift build --build-tests
swift test --skip-build
