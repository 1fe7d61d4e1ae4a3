#!/usr/bin/env python3
"""Read throughput through replicas, and replication lag under a fixed write rate (issue 14).

The sibling of full_sync.py (same way of starting release servers, same venv: redis-py from
.build/py). On loopback it starts a release lookalike-server primary, loads N generated
clustered vectors (pipelined VADD FP32, default index HNSW32), SAVEs (seals) them, starts one
replica with --replicaof (full sync: segment files copied, no index rebuilt) and three real
redis-sentinel processes, then measures, printing one JSON line per measurement:

  1. read throughput: VSIM ... COUNT 10 from --procs client processes × --threads threads each,
     every thread its own connection, for --seconds after a one-second warm-up, sent
       - to the primary alone (plain redis.Redis),
       - through Sentinel(...).slave_for(...) with one replica,
       - (after a second replica is started and Sentinel lists it) through slave_for with two,
       - to the primary alone again (drift check; the replicas are idle meanwhile).
     Each client process has its own Sentinel pool, which hands its connections to the replicas
     round-robin; INFO commandstats on every node shows where the VSIMs went.
  2. replication lag (before the second replica exists: one replica): a writer process sends
     --rate VADD/s open loop (a pipeline of --batch due every batch/rate seconds, sent on
     schedule by whichever of --writers connections is free) into a fresh collection for
     --lag-seconds; meanwhile
       - every 50 ms, the primary's INFO replication: master_repl_offset minus the replica's
         acknowledged offset (slave0 offset) = bytes not yet acknowledged;
       - every 100 ms a probe write (a tiny separate collection) on its own connection, then
         alternately WAIT 1 5000 (time until the replica acknowledged it) or polling the
         replica's VISMEMBER (time until it is readable there).
     It reports medians and p99, and the rate the writer kept; once per --lag-index (HNSW32 and
     Flat: the graph insertion cost on both nodes, and the replication path without it).

  Tools/bench/replicas.py --bin .build/release --items 50000 --dim 128 --work /tmp/replbench
Needs redis-py (.build/py from Tools/test.sh) and redis-sentinel (Tools/setup.sh).
"""
import argparse
import json
import multiprocessing
import random
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path

import redis
from redis.sentinel import Sentinel

from full_sync import start

SENTINEL = shutil.which("redis-sentinel")


def clustered(rng, centers, n, dim, spread=0.35):
    """n FP32 blobs, each a random centre plus uniform noise (clustered like real embeddings)."""
    out = []
    for _ in range(n):
        c = centers[rng.randrange(len(centers))]
        out.append(struct.pack(f"<{dim}f", *(x + spread * (rng.random() - 0.5) for x in c)))
    return out


def make_centers(rng, count, dim):
    return [[rng.gauss(0, 1) for _ in range(dim)] for _ in range(count)]


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))] if s else None


# ---- servers and Sentinel ------------------------------------------------------------------

def start_sentinel(work, n, primary_port):
    """One redis-sentinel on a free port watching the primary (as Tests/server/test_sentinel.py)."""
    from full_sync import free_port
    port = free_port()
    conf = work / f"sentinel-{n}.conf"
    conf.write_text("\n".join([
        f"port {port}", "bind 127.0.0.1", "daemonize no", f"dir {work}", f"logfile {work}/sentinel-{n}.log",
        f"sentinel monitor mymaster 127.0.0.1 {primary_port} 2",
        "sentinel down-after-milliseconds mymaster 5000", "sentinel failover-timeout mymaster 60000",
    ]) + "\n")
    p = subprocess.Popen([SENTINEL, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p, port


def wait_for(what, check, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def vsim_calls(client):
    return client.info("commandstats").get("cmdstat_vsim", {}).get("calls", 0)


# ---- read throughput -----------------------------------------------------------------------

def read_worker(target, sentinel_ports, primary_port, threads, seconds, queries, out):
    """One client process: `threads` threads, each its own connection, VSIM for `seconds`."""
    if target == "primary":
        client = redis.Redis(port=primary_port, socket_timeout=30, max_connections=threads)
    else:
        sentinel = Sentinel([("127.0.0.1", p) for p in sentinel_ports], socket_timeout=5)
        client = sentinel.slave_for("mymaster", socket_timeout=30, max_connections=threads)
    counts, latencies = [0] * threads, [[] for _ in range(threads)]
    begin = time.time() + 1.0          # one second of warm-up, not counted
    end = begin + seconds

    def loop(i):
        rng = random.Random(i)
        while True:
            q = queries[rng.randrange(len(queries))]
            t = time.time()
            client.execute_command("VSIM", "items", "FP32", q, "COUNT", 10)
            done = time.time()
            if done >= end:
                return
            if t >= begin:
                counts[i] += 1
                latencies[i].append(done - t)
    ts = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put((sum(counts), [x for l in latencies for x in l]))


def read_case(name, target, a, sentinel_ports, primary_port, queries, nodes):
    before = {n: vsim_calls(c) for n, c in nodes.items()}
    out = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=read_worker, args=(target, sentinel_ports, primary_port,
                                                                a.threads, a.seconds, queries, out))
             for _ in range(a.procs)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    total = sum(r[0] for r in results)
    lat = [x for r in results for x in r[1]]
    calls = {n: vsim_calls(c) - before[n] for n, c in nodes.items()}
    print(json.dumps({"step": "read", "case": name, "clients": a.procs * a.threads,
                      "queries_per_second": round(total / a.seconds),
                      "latency_median_ms": round(percentile(lat, 0.5) * 1000, 2),
                      "latency_p99_ms": round(percentile(lat, 0.99) * 1000, 2),
                      "vsim_calls_per_node (incl. warm-up)": calls}), flush=True)


# ---- replication lag -----------------------------------------------------------------------

def writer(port, dim, rate, batch, seconds, index, connections, out, ready):
    """Open loop: a pipeline of `batch` VADDs due every batch/rate s, sent on schedule by the
    first of `connections` threads that is free (so a slow answer does not delay the next
    batch while another connection is idle); reports the rate it kept and how late it sent."""
    rng = random.Random(7)
    centers = make_centers(rng, 200, dim)
    n = int(rate * seconds)
    vectors = clustered(rng, centers, n, dim)
    clients = [redis.Redis(port=port, socket_timeout=60) for _ in range(connections)]
    clients[0].execute_command("VADD", "stream", "FP32", vectors[0], "w0", "INDEX", index)  # creates it
    interval = batch / rate
    slots = iter(range(1, n, batch))
    lock = threading.Lock()
    late = []  # how far behind schedule each batch was sent
    start_at = time.time() + 0.5
    ready.set()

    def send(c):
        while True:
            with lock:
                lo = next(slots, None)
            if lo is None:
                return
            due = start_at + (lo // batch) * interval
            now = time.time()
            if now < due:
                time.sleep(due - now)
            late.append(max(0.0, time.time() - due))
            p = c.pipeline(transaction=False)
            for j in range(lo, min(n, lo + batch)):
                p.execute_command("VADD", "stream", "FP32", vectors[j], f"w{j}")
            p.execute()
    threads = [threading.Thread(target=send, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - start_at
    out.put({"writes": n, "elapsed": elapsed + interval,  # the last batch owns one slot too
             "late_median_ms": percentile(late, 0.5) * 1000, "late_max_ms": max(late) * 1000})


def lag_case(a, primary, replica, pport, index):
    out, ready = multiprocessing.Queue(), multiprocessing.Event()
    w = multiprocessing.Process(target=writer, args=(pport, a.dim, a.rate, a.batch, a.lag_seconds, index,
                                                                 a.writers, out, ready))
    w.start()
    ready.wait()  # the writer generates its vectors first; sample only while it writes
    time.sleep(1.0)
    byte_lags, wait_ms, visible_ms = [], [], []
    probe = redis.Redis(port=pport, socket_timeout=10)
    stop = threading.Event()

    def sample_bytes():
        while not stop.is_set():
            info = primary.info("replication")
            if "slave0" in info:
                byte_lags.append(info["master_repl_offset"] - info["slave0"]["offset"])
            time.sleep(0.05)
    sampler = threading.Thread(target=sample_bytes)
    sampler.start()
    i = 0
    while w.is_alive() and out.empty():
        name = f"p{i}"
        probe.execute_command("VADD", "probe", "VALUES", 2, 1.0, float(i % 7), name)
        t = time.time()
        if i % 2 == 0:
            assert probe.execute_command("WAIT", 1, 5000) == 1, "the replica did not acknowledge in 5 s"
            wait_ms.append((time.time() - t) * 1000)
        else:
            while not replica.execute_command("VISMEMBER", "probe", name):
                time.sleep(0.0005)
            visible_ms.append((time.time() - t) * 1000)
        i += 1
        time.sleep(0.1)
    stop.set()
    sampler.join()
    result = out.get()
    w.join()
    assert primary.execute_command("WAIT", 1, 60000) == 1
    primary.delete("stream", "probe")  # so a later full sync does not carry them
    print(json.dumps({"step": "lag", "index": index, "target_writes_per_second": a.rate, "batch": a.batch, "writer_connections": a.writers,
                      "kept_writes_per_second": round(result["writes"] / result["elapsed"]),
                      "writer_late_median_ms": round(result["late_median_ms"], 1),
                      "writer_late_max_ms": round(result["late_max_ms"], 1),
                      "unacked_bytes_median": percentile(byte_lags, 0.5),
                      "unacked_bytes_p99": percentile(byte_lags, 0.99), "byte_samples": len(byte_lags),
                      "wait1_ms_median": round(percentile(wait_ms, 0.5), 1),
                      "wait1_ms_p99": round(percentile(wait_ms, 0.99), 1),
                      "visible_on_replica_ms_median": round(percentile(visible_ms, 0.5), 1),
                      "visible_on_replica_ms_p99": round(percentile(visible_ms, 0.99), 1),
                      "probes": len(wait_ms) + len(visible_ms)}), flush=True)


# ---- main ----------------------------------------------------------------------------------

def load(c, a):
    rng = random.Random(1)
    centers = make_centers(rng, 200, a.dim)
    t = time.time()
    for lo in range(0, a.items, 1000):
        vs = clustered(rng, centers, min(1000, a.items - lo), a.dim)
        p = c.pipeline(transaction=False)
        for j, v in enumerate(vs):
            p.execute_command("VADD", "items", "FP32", v, f"k{lo + j}")
        p.execute()
    c.execute_command("SAVE")
    print(json.dumps({"step": "load+save", "items": a.items, "dim": a.dim,
                      "seconds": round(time.time() - t, 1)}), flush=True)
    return clustered(rng, centers, 1000, a.dim)  # queries from the same distribution


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=".build/release")
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--work", default="/tmp/lookalike-replicas")
    ap.add_argument("--procs", type=int, default=3, help="client processes")
    ap.add_argument("--threads", type=int, default=2, help="threads (connections) per client process")
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rate", type=int, default=5000, help="writes/s of the lag test")
    ap.add_argument("--batch", type=int, default=50, help="VADDs per pipeline of the lag test")
    ap.add_argument("--lag-seconds", type=float, default=20)
    ap.add_argument("--writers", type=int, default=4, help="connections the lag test's writer may use at once")
    ap.add_argument("--lag-index", default="HNSW32,Flat", help="index types of the lag test's collection, one run each")
    a = ap.parse_args()
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    binary = Path(a.bin) / "lookalike-server"
    children = []
    try:
        primary_p, pport, primary = start(binary, work / "primary")
        children.append(primary_p)
        queries = load(primary, a)
        r1_p, _, r1 = start(binary, work / "replica1", "--replicaof", f"127.0.0.1 {pport}")
        children.append(r1_p)
        wait_for("replica 1 in sync", lambda: r1.info("replication").get("master_link_status") == "up"
                 and r1.execute_command("VCARD", "items") == a.items)
        sentinels = [start_sentinel(work, n, pport) for n in (1, 2, 3)]
        children += [p for p, _ in sentinels]
        sports = [port for _, port in sentinels]
        probe_sentinel = Sentinel([("127.0.0.1", p) for p in sports], socket_timeout=5)
        wait_for("Sentinel to list one replica", lambda: len(probe_sentinel.discover_slaves("mymaster")) == 1)
        nodes = {"primary": primary, "replica1": r1}

        read_case("primary alone", "primary", a, sports, pport, queries, nodes)
        read_case("slave_for, 1 replica", "replicas", a, sports, pport, queries, nodes)
        for index in a.lag_index.split(","):
            lag_case(a, primary, r1, pport, index)

        r2_p, _, r2 = start(binary, work / "replica2", "--replicaof", f"127.0.0.1 {pport}")
        children.append(r2_p)
        wait_for("replica 2 in sync", lambda: r2.info("replication").get("master_link_status") == "up"
                 and r2.execute_command("VCARD", "items") == a.items)
        wait_for("Sentinel to list two replicas", lambda: len(probe_sentinel.discover_slaves("mymaster")) == 2)
        nodes["replica2"] = r2
        read_case("slave_for, 2 replicas", "replicas", a, sports, pport, queries, nodes)
        read_case("primary alone (again)", "primary", a, sports, pport, queries, nodes)
    finally:
        for p in reversed(children):
            p.terminate()
        for p in children:
            p.wait()


if __name__ == "__main__":
    main()
