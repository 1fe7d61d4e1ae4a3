#!/usr/bin/env python3
"""Probes of the indexer's catch-up beam (Docs/benchmarks.md, "Latency under ingest").

Runs against a release server you start yourself, e.g.
  .build/release/lookalike-server --port 6601 --data /tmp/lk-probe [--build-policy idle]
with the peers' virtual environment (Tools/bench/setup-peers.sh: numpy and redis-py):

  catch_up.py writes PORT [SECONDS]   10,000 items loaded and saved, then a writer at full speed
                                      (500 in flight) beside 500 VSIM/s: writes/s and the
                                      indexer's INFO counters (caught up, drained, throttled)
  catch_up.py recall PORT             30,000 clustered 384-d items loaded beside a query loop,
                                      then another 30,000 alone: recall@10 of each against
                                      brute force at EF 16, 32, 64

Each run wants a fresh data folder. Vectors: 2,000 or 3,000 Gaussian centres plus noise 0.3,
so new items have neighbourhoods, as a shop's do.
"""
import sys
import threading
import time

import numpy as np
import redis

D = 384
COUNTERS = ["lookalike_linked_items", "lookalike_linked_items_drained", "lookalike_linked_items_caught_up",
            "lookalike_write_throttled_seconds", "lookalike_write_throttled_batches"]


def clustered(rng, centres, n):
    return (centres[rng.integers(0, len(centres), n)] + 0.3 * rng.standard_normal((n, D))).astype(np.float32)


def load(r, key, vectors, prefix="k"):
    p = r.pipeline(transaction=False)
    for i, v in enumerate(vectors):
        p.execute_command("VADD", key, "FP32", v.tobytes(), f"{prefix}{i}")
        if i % 500 == 499:
            p.execute()
    p.execute()


class QueryLoop:
    """VSIM at about `rate` per second on its own connection until stopped."""

    def __init__(self, port, key, queries, rate=500):
        self.stop = False
        self.thread = threading.Thread(target=self.run, args=(port, key, queries, rate))
        self.thread.start()

    def run(self, port, key, queries, rate):
        q, n, t0 = redis.Redis(port=port), 0, time.time()
        while not self.stop:
            try:
                q.execute_command("VSIM", key, "FP32", queries[n % len(queries)].tobytes(), "COUNT", 10, "EF", 64)
            except redis.ResponseError:
                pass  # the key does not exist before its first VADD
            n += 1
            wait = t0 + n / rate - time.time()
            if wait > 0:
                time.sleep(wait)

    def end(self):
        self.stop = True
        self.thread.join()


def writes(port, seconds):
    r, rng = redis.Redis(port=port), np.random.default_rng(1)
    centres = rng.standard_normal((2000, D)).astype(np.float32)
    load(r, "items", clustered(rng, centres, 10_000), prefix="pre")
    r.execute_command("SAVE")
    fresh = clustered(rng, centres, 5_000)
    before = r.info()
    loop = QueryLoop(port, "items", centres)
    t0, n = time.time(), 0
    p = r.pipeline(transaction=False)
    while time.time() - t0 < seconds:
        for j in range(500):
            p.execute_command("VADD", "items", "FP32", fresh[(n + j) % len(fresh)].tobytes(), f"new{n + j}")
        p.execute()
        n += 500
    elapsed = time.time() - t0
    loop.end()
    after = r.info()
    print(f"writes {n / elapsed:.0f}/s beside 500 VSIM/s;", {k: round(after[k] - before[k], 3) for k in COUNTERS})


def recall(port):
    r, rng = redis.Redis(port=port), np.random.default_rng(7)
    centres = rng.standard_normal((3000, D)).astype(np.float32)
    x = clustered(rng, centres, 30_000)
    queries = clustered(rng, centres, 300)
    caught = [r.info()["lookalike_linked_items_caught_up"]]
    loop = QueryLoop(port, "beside", queries)
    load(r, "beside", x)
    loop.end()
    caught.append(r.info()["lookalike_linked_items_caught_up"])
    load(r, "alone", x)
    time.sleep(3)  # the last items linked
    caught.append(r.info()["lookalike_linked_items_caught_up"])
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(-(qn @ xn.T), axis=1)[:, :10]
    for key, n in [("beside", caught[1] - caught[0]), ("alone", caught[2] - caught[1])]:
        for ef in [16, 32, 64]:
            total = 0.0
            for i, q in enumerate(queries):
                hits = r.execute_command("VSIM", key, "FP32", q.tobytes(), "COUNT", 10, "EF", ef)
                total += len({int(h[1:]) for h in hits} & set(truth[i].tolist())) / 10
            print(f"{key} ({n} of {len(x)} linked with the catch-up beam): EF {ef} recall@10 {total / len(queries):.3f}")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("writes", "recall"):
        sys.exit(__doc__)
    if sys.argv[1] == "writes":
        writes(int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 10.0)
    else:
        recall(int(sys.argv[2]))
