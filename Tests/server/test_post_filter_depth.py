"""--post-filter-depth: how deep a large filter's unfiltered search goes (FilteredSearch.swift,
postFilterEffort). Out-of-range values are refused at start; a shallow depth still returns k
members, nearest first by exact score among what it found."""
import json
import random
import struct

import pytest

from conftest import Server, free_port
from test_metrics import scrape


def test_out_of_range_depths_are_refused(tmp_path):
    for bad in ("0", "65"):
        with pytest.raises(RuntimeError, match="--post-filter-depth must be from 1 to 64"):
            Server(tmp_path / f"data{bad}", "--post-filter-depth", bad).start()


def test_a_shallow_post_filter_still_returns_k_members(tmp_path):
    # 4,000 items, half of them in category "a": above --exact-filter-limit 0, the cost model
    # post-filters (2,000 members cost more to scan than a walk of efSearch 64).
    metrics = free_port()
    s = Server(tmp_path / "data", "--post-filter-depth", "1", "--exact-filter-limit", "0",
               "--metrics-port", str(metrics)).start()
    try:
        r = s.client()
        rng = random.Random(7)
        pipe = r.pipeline(transaction=False)
        for i in range(4000):
            v = [rng.gauss(0, 1) for _ in range(16)]
            pipe.execute_command("VADD", "items", "FP32", struct.pack("16f", *v), f"e{i}",
                                 "SETATTR", json.dumps({"category": "a" if i % 2 == 0 else "b"}))
        pipe.execute()
        assert r.execute_command("SAVE") is True  # one sealed HNSW segment
        for i in range(0, 40, 2):
            got = r.execute_command("VSIM", "items", "ELE", f"e{i}", "COUNT", 10, "WITHSCORES", "CATEGORY", "a")
            names, scores = got[0::2], [float(x) for x in got[1::2]]
            assert len(names) == 10
            assert all(int(n[1:]) % 2 == 0 for n in names)
            assert names[0] == f"e{i}"
            assert scores == sorted(scores, reverse=True)
        # The queries were post-filtered (the plan under test), not scanned.
        assert scrape(metrics).get(("lookalike_filtered_plans_total", (("plan", "post-filter"),)), 0) >= 20
    finally:
        s.stop()
