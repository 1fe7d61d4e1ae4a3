#!/usr/bin/env bash
# Installs the system packages Lookalike builds and tests against (Debian 12), once.
#   libfaiss-dev     FAISS 1.7.3 (static library + headers)
#   libopenblas-dev  BLAS/LAPACK for FAISS and our exact scans
#   liblmdb-dev      LMDB
#   redis-tools      redis-cli and redis-benchmark, real clients for the server tests
#   prometheus-redis-exporter  redis_exporter, a real monitoring tool for the server tests
#   redis-sentinel   the real Redis Sentinel, for the replication failover test
#   systemd          systemd-analyze, which checks Tools/lookalike.service (test_service.py)
set -euo pipefail
packages=(libfaiss-dev libopenblas-dev liblmdb-dev redis-tools prometheus-redis-exporter redis-sentinel systemd)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
