// ivf_scan.h: the shim's IVF search, used for IVF-Flat and IVF-SQ8/SQfp16 instead of FAISS's
// own (Debian's FAISS is built without SIMD: its coarse quantizer for a few queries and its list
// scanners are scalar loops, 5-30x slower than faiss-cpu's), and its coarse step, which IVF-PQ
// also takes (ivfpq_search.h: FAISS's own PQ list scan after it).
//
// Owns: the coarse quantizer for small batches (AVX2 distances from each query to every
// centroid of a flat quantizer, top-nprobe by FAISS's heap), the list scanner (AVX2 kernels of
// distances.h and sq_storage.h over the codes and ids of ArrayInvertedLists or mmapped
// OnDiskInvertedLists, FAISS's heap), the split of a batch over plain threads, and the
// once-per-process check (version, self-test of every kind, IVF-PQ's included) that this FAISS
// is the one whose semantics the shim copies.
// Invariants:
//   - Results equal FAISS 1.7.3's IndexIVF::search (IndexIVFFlat's scanner, ScalarQuantizer's
//     IVFSQScannerL2/IP) up to float rounding: same lists probed (the quantizer's own metric),
//     same distances (by_residual: L2 scores the residual query q - c against the codes; inner
//     product adds the coarse score <q, c>), same heap, so same ties, same -1 padding.
//   - A selector bitmap is tested on each stored id before it is scored, as FAISS's is.
//   - The coarse step returns the lists and scores FAISS's quantizer->search returns (for 20
//     queries or more, or a quantizer that is not flat, it is that call).
//   - Anything else (other index or list types, max_codes, no AVX2, another FAISS, a failed
//     self-test) is declined: ivf_fast_kind returns none and the caller runs FAISS's search.
// Threads: a search reads the index only; any number may run at once. A batch is split over
// the OpenMP thread count as plain threads (this module is compiled without -fopenmp).
#ifndef LOOKALIKE_IVF_SCAN_H
#define LOOKALIKE_IVF_SCAN_H

#include <faiss/IndexIVF.h>

#include <cstddef>
#include <cstdint>
#include <functional>

namespace lk {

// pq: IndexIVFPQ, searched by ivfpq_search (ivfpq_search.h), not by ivf_fast_search.
enum class IvfKind { none = 0, flat, sq8, fp16, pq };

// What the shim's IVF search would do with this index (not behind a pre-transform).
IvfKind ivf_fast_kind(const faiss::IndexIVF &ivf);

// Searches n queries as FAISS's IndexIVF::search with this nprobe and bitmap selector (null for
// none) would. Only for an index whose ivf_fast_kind is flat, sq8 or fp16. threads <= 0: one.
void ivf_fast_search(const faiss::IndexIVF &ivf, int64_t n, const float *x, int64_t k, size_t nprobe,
                     const uint8_t *bitmap, size_t bitmap_bytes, int threads, float *distances,
                     int64_t *labels);

// The coarse step: for each of n queries, the nprobe (<= nlist) nearest lists in keys and their
// quantizer scores in dis, n * nprobe each, as ivf.quantizer->search gives them.
void ivf_coarse(const faiss::IndexIVF &ivf, int64_t n, const float *x, size_t nprobe, float *dis, int64_t *keys);

// Runs slice(q0, q1) over [0, n) split into min(n, threads) parts, one plain thread each (the
// caller's the first); rethrows the first exception once every part has ended.
void ivf_split(int64_t n, int threads, const std::function<void(int64_t, int64_t)> &slice);

}  // namespace lk

#endif
