// ivfpq_search.cpp: IVF-PQ search (ivfpq_search.h): FAISS 1.7.3's IndexIVF::search with the
// coarse step swapped for the shim's.
//
// What this copies of 1.7.3's IndexIVF::search: nprobe = min(nlist, params.nprobe); per part of
// the batch, quantizer->search(nprobe) (here ivf_coarse), invlists->prefetch_lists over the keys
// (a no-op for in-memory lists and for mmapped ones with prefetch_nthread 0), then
// search_preassigned(keys, coarse scores, store_pairs false, params). FAISS's search also adds
// per-part counters to the global indexIVF_stats; nothing here reads them, and passing none
// keeps concurrent searches from racing on them. A batch of 20 queries or more gets FAISS's own
// search: its coarse step is then FAISS's BLAS one either way (ivf_coarse), so nothing is
// gained, and a first version that split such a batch over plain threads after one BLAS coarse
// call measured slower (200 queries x 128-d, IVF256,PQ16, nprobe 16: 7,993 q/s against FAISS's
// 12,743; one run on a loaded machine, possibly noise).
#include "ivfpq_search.h"

#include "ivf_scan.h"

#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/distances.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace lk {

namespace {

void search_part(const faiss::IndexIVF &ivf, int64_t n, const float *x, int64_t k, size_t nprobe,
                 const faiss::SearchParametersIVF &params, float *distances, int64_t *labels) {
    std::vector<float> coarse((size_t)n * nprobe);
    std::vector<int64_t> keys((size_t)n * nprobe);
    ivf_coarse(ivf, n, x, nprobe, coarse.data(), keys.data());
    ivf.invlists->prefetch_lists(keys.data(), (int)(n * (int64_t)nprobe));
    ivf.search_preassigned(n, x, k, keys.data(), coarse.data(), distances, labels, false, &params, nullptr);
}

}  // namespace

void ivfpq_search(const faiss::IndexIVF &ivf, int64_t n, const float *x, int64_t k,
                  const faiss::SearchParametersIVF &params, int threads, float *distances, int64_t *labels) {
    if (k <= 0) throw std::invalid_argument("k must be positive");
    const size_t nprobe = std::min(ivf.nlist, params.nprobe);
    if (nprobe == 0) throw std::invalid_argument("nprobe must be positive");
    if (n >= faiss::distance_compute_blas_threshold) return ivf.search(n, x, k, distances, labels, &params);
    ivf_split(n, threads, [&](int64_t q0, int64_t q1) {
        search_part(ivf, q1 - q0, x + q0 * ivf.d, k, nprobe, params, distances + q0 * k, labels + q0 * k);
    });
}

}  // namespace lk
