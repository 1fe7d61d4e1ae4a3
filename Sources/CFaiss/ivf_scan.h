// ivf_scan.h: the shim's IVF search, used for IVF-Flat and IVF-SQ8/SQfp16 instead of FAISS's
// own (Debian's FAISS is built without SIMD: its coarse quantizer for a few queries and its list
// scanners are scalar loops, 5-30x slower than faiss-cpu's).
//
// Owns: the coarse quantizer for small batches (AVX2 distances from each query to every
// centroid of a flat quantizer, top-nprobe by FAISS's heap), the list scanner (AVX2 kernels of
// distances.h and sq_storage.h over the codes and ids of ArrayInvertedLists or mmapped
// OnDiskInvertedLists, FAISS's heap), and the once-per-process check that this FAISS is the
// one whose semantics the scanner copies.
// Invariants:
//   - Results equal FAISS 1.7.3's IndexIVF::search (IndexIVFFlat's scanner, ScalarQuantizer's
//     IVFSQScannerL2/IP) up to float rounding: same lists probed (the quantizer's own metric),
//     same distances (by_residual: L2 scores the residual query q - c against the codes; inner
//     product adds the coarse score <q, c>), same heap, so same ties, same -1 padding.
//   - A selector bitmap is tested on each stored id before it is scored, as FAISS's is.
//   - Anything else (other index or list types, max_codes, no AVX2, another FAISS, a failed
//     self-test) is declined: ivf_fast_kind returns none and the caller runs FAISS's search.
// Threads: a search reads the index only; any number may run at once. A batch is split over
// the OpenMP thread count as plain threads (this module is compiled without -fopenmp).
#ifndef LOOKALIKE_IVF_SCAN_H
#define LOOKALIKE_IVF_SCAN_H

#include <faiss/IndexIVF.h>

#include <cstddef>
#include <cstdint>

namespace lk {

enum class IvfKind { none = 0, flat, sq8, fp16 };

// What the shim's IVF search would do with this index (not behind a pre-transform).
IvfKind ivf_fast_kind(const faiss::IndexIVF &ivf);

// Searches n queries as FAISS's IndexIVF::search with this nprobe and bitmap selector (null for
// none) would. Only for an index whose ivf_fast_kind is not none. threads <= 0: one thread.
void ivf_fast_search(const faiss::IndexIVF &ivf, int64_t n, const float *x, int64_t k, size_t nprobe,
                     const uint8_t *bitmap, size_t bitmap_bytes, int threads, float *distances,
                     int64_t *labels);

}  // namespace lk

#endif
