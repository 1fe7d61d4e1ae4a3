#!/usr/bin/env python3
"""VSIM ... ELE queries/s against running servers, in turn: an A/B of two binaries on one folder.

For comparing two server binaries on the same data (a folder kept by `lookalike-bench scale
--keep DIR` and a copy of it, each served by one binary on its own port): every round queries
each port in turn with the same VSIM, from two connections (pipelines of 16), and prints the
rate per port, so rounds interleave and the machine's drift falls on both sides alike.

  .build/py/bin/python Tools/bench/vsim_rate.py --ports 6491 6492 --rounds 3 --queries 300 \
      -- NPROBE 64 RESCORE 100

Elements are queried by name (`item<i>`, the names `scale` gives; held-out names are skipped:
their errors are ignored), so the rate includes reading the element's stored vector. Used for
Docs/benchmarks.md, "4096-d on data of low intrinsic dimension" (2026-12-04).
"""
import argparse
import threading
import time

import redis


def rate(port, key, count, items, extra):
    """Queries/s of 2 connections × `count` VSIMs each on `port`."""
    results = []

    def run(offset):
        r = redis.Redis(port=port)
        start = time.time()
        pipe = r.pipeline(transaction=False)
        for i in range(count):
            pipe.execute_command("VSIM", key, "ELE", f"item{(offset + i * 7919) % items}", "COUNT", 10, *extra)
            if i % 16 == 15:
                pipe.execute(raise_on_error=False)
                pipe = r.pipeline(transaction=False)
        pipe.execute(raise_on_error=False)
        results.append(count / (time.time() - start))

    threads = [threading.Thread(target=run, args=(o,)) for o in (0, items // 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(results)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ports", type=int, nargs="+", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--queries", type=int, default=300, help="per connection and point")
    p.add_argument("--key", default="items")
    p.add_argument("--items", type=int, default=100_000, help="names item0 .. item<items-1>")
    p.add_argument("extra", nargs="*", help="VSIM options after --, e.g. NPROBE 64 RESCORE 100")
    a = p.parse_args()
    for round_ in range(1, a.rounds + 1):
        for port in a.ports:
            q = rate(port, a.key, a.queries, a.items, a.extra)
            print(f"round {round_} port {port} {' '.join(a.extra)}: {q:.0f} q/s", flush=True)


if __name__ == "__main__":
    main()
