#!/usr/bin/env python3
"""Where a data folder's LMDB bytes go: pages and bytes per entry of every table (Docs/sizing.md).

  lmdb_pages.py DATA            per table: entries, leaf / overflow / branch pages, bytes, B/entry
  lmdb_pages.py --append D N    N float32 vectors of dimension D under ascending 8-byte big-endian
                                keys in 1,000-item transactions, written with plain puts (what the
                                engine does) and with MDB_APPEND, in a scratch folder: B/vector

Read-only on DATA (no lock taken: run it on a stopped server's folder, or accept a torn view).
Needs py-lmdb (`pip install lmdb`) in the interpreter that runs it; nothing else of the project.
"""
import os
import shutil
import struct
import sys
import tempfile

import lmdb


def tables(path):
    env = lmdb.open(path, readonly=True, lock=False, max_dbs=4096, subdir=True)
    with env.begin() as txn:
        names = [k for k, _ in txn.cursor()]
        print("%-24s %9s %7s %8s %6s %12s %8s" % ("table", "entries", "leaf", "overflow", "branch", "bytes", "B/entry"))
        for name in names:
            try:
                db = env.open_db(name, txn=txn, create=False)
            except lmdb.Error:
                continue  # a plain key of the main table, not a named table
            s = txn.stat(db)
            nbytes = (s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"]) * s["psize"]
            per = nbytes / s["entries"] if s["entries"] else 0
            print("%-24s %9d %7d %8d %6d %12d %8.0f" % (name.decode(errors="replace"), s["entries"], s["leaf_pages"],
                                                       s["overflow_pages"], s["branch_pages"], nbytes, per))
    print("data.mdb: %d bytes" % os.path.getsize(os.path.join(path, "data.mdb")))


def append_experiment(d, n):
    vector = bytes(4 * d)
    for append in (False, True):
        folder = tempfile.mkdtemp(prefix="lmdb-pages-")
        try:
            env = lmdb.open(folder, map_size=max(1 << 30, 16 * n * (4 * d + 64)), max_dbs=2)
            db = env.open_db(b"vectors")
            for start in range(0, n, 1000):
                with env.begin(write=True) as txn:
                    for i in range(start, min(n, start + 1000)):
                        txn.put(struct.pack(">Q", i), vector, db=db, append=append)
            with env.begin() as txn:
                s = txn.stat(db)
            pages = s["leaf_pages"] + s["overflow_pages"] + s["branch_pages"]
            print("d %d, %s: %.0f B a vector (%.2fx the 4d bytes)" % (d, "MDB_APPEND" if append else "plain puts",
                                                                      pages * s["psize"] / n, pages * s["psize"] / n / (4 * d)))
            env.close()
        finally:
            shutil.rmtree(folder)


if __name__ == "__main__":
    if len(sys.argv) == 2:
        tables(sys.argv[1])
    elif len(sys.argv) == 4 and sys.argv[1] == "--append":
        append_experiment(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(__doc__)
