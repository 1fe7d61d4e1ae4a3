// ivfpq_search.h: IVF-PQ search with the shim's coarse step and FAISS's own list scan.
//
// For one query a call (the engine's path) FAISS 1.7.3's IndexIVF::search spends nearly all its
// time in the coarse step, a scalar loop over every centroid (Debian builds FAISS without SIMD:
// 1,024 x 4,096 multiply-adds a query at IVF1024,PQ64 and 4096-d). Its PQ list scan (tables,
// then one lookup a code) is cheap by comparison and stays FAISS's.
//
// Owns: the call sequence of IndexIVF::search (coarse step, prefetch, search_preassigned), with
// the coarse step from ivf_scan.h's AVX2 quantizer, for fewer than 20 queries a call.
// Invariants:
//   - Results equal FAISS 1.7.3's IndexIVF::search with the same params up to float rounding of
//     the coarse scores: same lists in the same order (ivf_scan's coarse step equals FAISS's
//     knn), the same params (nprobe, selector, max_codes) reach search_preassigned. L2 with the
//     precomputed table starts each list's distances at the coarse score ||q - c||^2; inner
//     product recomputes <q, c> itself and uses the keys only.
//   - Only for an index whose ivf_fast_kind (ivf_scan.h) is pq: the process-wide version check
//     and self-test against FAISS's own search cover this path.
// Threads: reads the index only; any number at once. Fewer than 20 queries are split over plain
// threads with ivf_split, each part one coarse step and one search_preassigned (FAISS's own
// search splits the same way over OpenMP); from 20, FAISS's own search runs (its coarse step is
// BLAS then, no gain to have).
#ifndef LOOKALIKE_IVFPQ_SEARCH_H
#define LOOKALIKE_IVFPQ_SEARCH_H

#include <faiss/IndexIVF.h>

#include <cstdint>

namespace lk {

// Searches n queries as ivf.search(n, x, k, distances, labels, &params) would. threads <= 0: one.
void ivfpq_search(const faiss::IndexIVF &ivf, int64_t n, const float *x, int64_t k,
                  const faiss::SearchParametersIVF &params, int threads, float *distances, int64_t *labels);

}  // namespace lk

#endif
