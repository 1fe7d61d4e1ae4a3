#!/usr/bin/env bash
# Makes the benchmark peers' virtual environment, .build/bench-py: faiss-cpu and hnswlib from
# PyPI (the libraries lookalike-bench compares against), numpy, and matplotlib for the plots.
# lookalike-bench runs it when the environment is missing; running it again is harmless.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! python3 -c 'import ensurepip' 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
fi
if [ ! -x .build/bench-py/bin/python ]; then
  python3 -m venv .build/bench-py
fi
.build/bench-py/bin/pip install -q --disable-pip-version-check faiss-cpu hnswlib numpy matplotlib redis
.build/bench-py/bin/python -c 'import faiss, hnswlib, matplotlib; print("peers:", "faiss-cpu", faiss.__version__)'
