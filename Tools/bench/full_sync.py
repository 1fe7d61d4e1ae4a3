#!/usr/bin/env python3
"""Full-sync time of a replica, and BGSAVE TO time, for N items of dimension D (issue 14).

Starts a release lookalike-server as primary on a fresh data folder, loads N random vectors
(pipelined VADD FP32), waits for indexing and SAVE, then times
  - SAVE TO <folder> (a backup snapshot of the same data),
  - a replica started with --replicaof until INFO master_link_status:up (the snapshot written,
    sent over loopback, installed and opened),
  - replication lag under a stream of writes: WAIT 1 round trips after pipelines of 100 writes.
Prints one JSON line per measurement.

  Tools/bench/full_sync.py --bin .build/release --items 100000 --dim 384 --work /tmp/fullsync \
      [--server-args "--default-index Flat"]
Needs redis-py (.build/py from Tools/test.sh).
"""
import argparse
import json
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import random

import redis


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, data, *extra):
    port = free_port()
    log = open(str(data) + ".log", "ab")
    p = subprocess.Popen([str(binary), "--port", str(port), "--data", str(data), *extra],
                         stdout=subprocess.DEVNULL, stderr=log)
    c = redis.Redis(port=port, socket_timeout=600)
    for _ in range(600):
        if p.poll() is not None:
            raise RuntimeError(f"server exited ({p.returncode}); see {data}.log")
        try:
            c.ping()
            return p, port, c
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=".build/release")
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--work", default="/tmp/lookalike-full-sync")
    ap.add_argument("--server-args", default="", help='extra primary flags, e.g. "--default-index Flat"')
    a = ap.parse_args()
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    binary = Path(a.bin) / "lookalike-server"
    primary, pport, c = start(binary, work / "primary", *a.server_args.split())
    try:
        rng = random.Random(1)

        def vectors(n):
            return [struct.pack(f"<{a.dim}f", *(rng.gauss(0, 1) for _ in range(a.dim))) for _ in range(n)]
        started = time.time()
        for lo in range(0, a.items, 1000):
            vs = vectors(min(1000, a.items - lo))
            p = c.pipeline(transaction=False)
            for j, v in enumerate(vs):
                p.execute_command("VADD", "items", "FP32", v, f"k{lo + j}", "SETATTR", '{"n": %d}' % (lo + j))
            p.execute()
        c.execute_command("SAVE")
        print(json.dumps({"step": "load+save", "items": a.items, "dim": a.dim, "seconds": round(time.time() - started, 1)}), flush=True)
        lmdb = (work / "primary" / "data.mdb").stat().st_size
        segments = sum(f.stat().st_size for f in (work / "primary" / "segments").rglob("*") if f.is_file())

        t = time.time()
        c.execute_command("SAVE", "TO", str(work / "backup"))
        info = c.info("persistence")
        print(json.dumps({"step": "SAVE TO", "seconds": round(time.time() - t, 2),
                          "bytes": info["lookalike_last_snapshot_bytes"], "lmdb_bytes": lmdb,
                          "segment_bytes": segments}), flush=True)

        t = time.time()
        replica, rport, r = start(binary, work / "replica", "--replicaof", f"127.0.0.1 {pport}")
        try:
            while r.info("replication").get("master_link_status") != "up":
                time.sleep(0.02)
            seconds = time.time() - t
            assert r.execute_command("VCARD", "items") == a.items
            print(json.dumps({"step": "full sync (replica start to link up)", "seconds": round(seconds, 2),
                              "bytes": c.info("persistence")["lookalike_last_snapshot_bytes"]}), flush=True)

            lags = []
            vs = vectors(5000)
            t = time.time()
            for lo in range(0, 5000, 100):
                p = c.pipeline(transaction=False)
                for j in range(100):
                    p.execute_command("VADD", "items", "FP32", vs[lo + j], f"new{lo + j}")
                p.execute()
                w = time.time()
                assert c.execute_command("WAIT", 1, 10000) == 1
                lags.append(time.time() - w)
            total = time.time() - t
            lags.sort()
            print(json.dumps({"step": "WAIT 1 after 100 writes", "writes_per_second": round(5000 / total),
                              "lag_median_ms": round(lags[len(lags) // 2] * 1000, 1),
                              "lag_p90_ms": round(lags[int(len(lags) * 0.9)] * 1000, 1)}), flush=True)
        finally:
            replica.terminate()
            replica.wait()
    finally:
        primary.terminate()
        primary.wait()


if __name__ == "__main__":
    main()
