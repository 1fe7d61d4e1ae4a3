#!/usr/bin/env python3
"""The peers of `lookalike-bench ann` and `lookalike-bench filtered`: faiss-cpu and hnswlib from
PyPI, in-process, on the vectors and queries the benchmark wrote.

lookalike-bench runs this with the virtual environment that `Tools/bench/setup-peers.sh` makes
(.build/bench-py: faiss-cpu, hnswlib, numpy, matplotlib). It writes, for every measured point,
one JSON line to stdout and the hits' row numbers to OUT/<label>.i64 (int64, queries × k, -1 for
none); lookalike-bench scores recall itself, the same way for every method.

  peers.py ann --base B.npy --queries Q.npy --out DIR --k 10 --threads 2 \
      --specs Flat HNSW32 IVF1024,Flat --hnsw-ef 16 32 64 --ivf-nprobe 1 4 16
  peers.py filtered --base B.npy --queries Q.npy --out DIR --k 10 --ef 64 --groups G.json
  peers.py ann --base B.npy --queries Q.npy --out DIR --normalise --train-rows 131072 \
      --specs IVF1024,PQ64 --ivf-nprobe 8 16 32 --refine-k-factor 4 16 64   # lookalike-bench scale --peers

Vectors arrive prepared (unit length for cosine), so every index here uses inner product.
Build settings match Lookalike's: HNSW M = 32 (FAISS "HNSW32"; hnswlib M = 32), efConstruction
40 (FAISS's default, and Lookalike's); IVF k-means on all base vectors.
Queries are searched as one batch on `--threads` threads, which is how these libraries are
fastest in-process. `--normalise` makes raw vectors unit length here (the scale benchmark writes
them raw). `--train-rows N` trains on the first N base rows (Lookalike trains on its first sealed
segment). `--refine-k-factor` adds, for every IVF spec, the same index wrapped in
IndexRefineFlat (exact re-ranking of k × factor candidates from a flat copy of the vectors) at
each factor and nprobe. Each point's line also carries the process's anonymous resident memory
after the build (`anon_mb`), and the train and add times.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def emit(out, label, library, index, param, build_s, seconds, queries, ids, **extra):
    ids.astype("<i8").tofile(out / f"{label}.i64")
    print(json.dumps({"label": label, "library": library, "index": index, "param": param,
                      "build_s": round(build_s, 3), "qps": queries / seconds, **extra}), flush=True)


def anon_mb():
    """This process's anonymous resident memory (RssAnon), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0


def timed(fn):
    t0 = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t0


def faiss_ann(a, base, queries, out):
    import faiss
    faiss.omp_set_num_threads(a.threads)
    lib = f"faiss-cpu {faiss.__version__}"
    d = base.shape[1]
    for spec in a.specs:
        index = faiss.index_factory(d, spec, faiss.METRIC_INNER_PRODUCT)
        if spec.startswith("HNSW"):
            index.hnsw.efConstruction = a.ef_construction
        if hasattr(index, "do_polysemous_training") and not a.polysemous:
            # FAISS's factory turns it on for PQ: a simulated-annealing reorder of every PQ
            # codebook for Hamming-distance filtering, which no search here uses (recall and
            # rate are the same without it); at 4096-d, PQ64, it costs many minutes.
            index.do_polysemous_training = False
        before = anon_mb()
        t0 = time.perf_counter()
        if not index.is_trained:
            index.train(base[:a.train_rows] if a.train_rows else base)
        train = time.perf_counter() - t0
        index.add(base)
        build = time.perf_counter() - t0
        memory = {"anon_mb": round(anon_mb() - before, 1), "train_s": round(train, 3), "add_s": round(build - train, 3)}
        if spec == "Flat":
            points = [("exact", None)]
        elif spec.startswith("HNSW"):
            points = [(f"ef={ef}", faiss.SearchParametersHNSW(efSearch=ef)) for ef in a.hnsw_ef]
        else:
            points = [(f"nprobe={p}", faiss.SearchParametersIVF(nprobe=p)) for p in a.ivf_nprobe]
        for name, params in points:
            index.search(queries[:50], a.k, params=params)  # warm-up
            (_, ids), s = timed(lambda: [index.search(queries, a.k, params=params) for _ in range(a.rounds)][0])
            emit(out, f"faiss-{spec}-{name}".replace(",", "_"), lib, spec, name, build, s, len(queries) * a.rounds, ids, **memory)
        if spec.startswith("IVF") and a.refine_k_factor:
            refine_ivf(a, index, spec, base, queries, out, lib, build)
        del index


def refine_ivf(a, index, spec, base, queries, out, lib, build):
    """The built IVF index under IndexRefineFlat: k × factor candidates re-ranked exactly."""
    import faiss
    before = anon_mb()
    t0 = time.perf_counter()
    refined = faiss.IndexRefineFlat(index, faiss.swig_ptr(base))  # copies the vectors
    memory = {"anon_mb": round(anon_mb() - before, 1), "train_s": 0.0, "add_s": round(time.perf_counter() - t0, 3)}
    for nprobe in a.ivf_nprobe:
        for factor in a.refine_k_factor:
            params = faiss.IndexRefineSearchParameters(k_factor=factor, base_index_params=faiss.SearchParametersIVF(nprobe=nprobe))
            refined.search(queries[:50], a.k, params=params)  # warm-up
            (_, ids), s = timed(lambda: [refined.search(queries, a.k, params=params) for _ in range(a.rounds)][0])
            name = f"nprobe={nprobe} refine={factor}"
            emit(out, f"faiss-{spec}-RFlat-nprobe={nprobe}-k{factor}".replace(",", "_"), lib, spec + ",RFlat", name, build, s,
                 len(queries) * a.rounds, ids, **memory)
    refined.own_fields = False  # the base index is the caller's
    del refined


def hnswlib_ann(a, base, queries, out):
    import hnswlib
    index = hnswlib.Index(space="ip", dim=base.shape[1])
    t0 = time.perf_counter()
    index.init_index(max_elements=len(base), M=32, ef_construction=40, random_seed=100)
    index.add_items(base, np.arange(len(base)), num_threads=a.threads)
    build = time.perf_counter() - t0
    for ef in a.hnsw_ef:
        index.set_ef(max(ef, a.k))
        index.knn_query(queries[:50], k=a.k, num_threads=a.threads)
        (ids, _), s = timed(lambda: [index.knn_query(queries, k=a.k, num_threads=a.threads) for _ in range(a.rounds)][0])
        emit(out, f"hnswlib-ef={ef}", f"hnswlib {hnswlib_version()}", "HNSW M=32", f"ef={ef}", build, s,
             len(queries) * a.rounds, ids.astype(np.int64))


def hnswlib_version():
    from importlib.metadata import version
    return version("hnswlib")


def filtered(a, base, queries, out):
    """Per group of rows: faiss-cpu HNSW32 with an id bitmap, hnswlib with a filter function."""
    import faiss
    import hnswlib
    faiss.omp_set_num_threads(1)
    groups = json.loads(Path(a.groups).read_text())
    fi = faiss.index_factory(base.shape[1], "HNSW32", faiss.METRIC_INNER_PRODUCT)
    fi.hnsw.efConstruction = 40
    fi.add(base)
    hi = hnswlib.Index(space="ip", dim=base.shape[1])
    hi.init_index(max_elements=len(base), M=32, ef_construction=40, random_seed=100)
    hi.add_items(base, np.arange(len(base)), num_threads=2)
    hi.set_ef(a.ef)
    for g in groups:
        rows = np.array(g["rows"], dtype=np.int64)
        sel = faiss.IDSelectorBatch(rows)
        params = faiss.SearchParametersHNSW(efSearch=a.ef, sel=sel)
        (_, ids), s = timed(lambda: fi.search(queries, a.k, params=params))
        emit(out, f"faiss-filter-{g['name']}", f"faiss-cpu {faiss.__version__}", "HNSW32 + IDSelector", g["name"], 0, s, len(queries), ids)
        allowed = np.zeros(len(base), dtype=bool)
        allowed[rows] = True
        ids = np.full((len(queries), a.k), -1, dtype=np.int64)
        t0 = time.perf_counter()
        for i, q in enumerate(queries):
            try:
                labels, _ = hi.knn_query(q, k=min(a.k, len(rows)), num_threads=1, filter=lambda x: allowed[x])
                ids[i, :labels.shape[1]] = labels[0]
            except RuntimeError:  # hnswlib raises when it finds fewer than k
                pass
        emit(out, f"hnswlib-filter-{g['name']}", f"hnswlib {hnswlib_version()}", "HNSW M=32 + filter", g["name"], 0,
             time.perf_counter() - t0, len(queries), ids)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["ann", "filtered"])
    p.add_argument("--base", required=True)
    p.add_argument("--queries", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1, help="times the query batch is searched for the rate")
    p.add_argument("--hnsw-ef", type=int, nargs="*", default=[16, 32, 64, 128])
    p.add_argument("--specs", nargs="*", default=["Flat", "HNSW32", "IVF1024,Flat", "IVF1024,SQ8"],
                   help="FAISS factory strings (inner product)")
    p.add_argument("--ivf-nprobe", type=int, nargs="*", default=[1, 4, 16, 64])
    p.add_argument("--ef", type=int, default=64)
    p.add_argument("--ef-construction", type=int, default=40, help="HNSW build effort of faiss-cpu (ann)")
    p.add_argument("--no-hnswlib", action="store_true", help="skip hnswlib (ann)")
    p.add_argument("--polysemous", action="store_true",
                   help="keep FAISS's polysemous training of PQ codebooks (its factory default; skipped otherwise)")
    p.add_argument("--normalise", action="store_true", help="make base and queries unit length (cosine) first")
    p.add_argument("--train-rows", type=int, default=0, help="train IVF/PQ/SQ on the first N base rows (0: all)")
    p.add_argument("--refine-k-factor", type=int, nargs="*", default=[],
                   help="IVF specs also under IndexRefineFlat at these k factors (ann)")
    p.add_argument("--groups")
    a = p.parse_args()
    base = np.ascontiguousarray(np.load(a.base), dtype=np.float32)
    queries = np.ascontiguousarray(np.load(a.queries), dtype=np.float32)
    if a.normalise:
        import faiss
        faiss.normalize_L2(base)
        faiss.normalize_L2(queries)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.mode == "filtered":
        filtered(a, base, queries, out)
        return
    faiss_ann(a, base, queries, out)
    if "HNSW32" in a.specs and not a.no_hnswlib:
        hnswlib_ann(a, base, queries, out)


if __name__ == "__main__":
    sys.exit(main())
