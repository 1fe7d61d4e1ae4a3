// shim_search.cpp: the extern "C" side of lookalike_faiss.h for searching: lk_index_search
// (which loop serves which index: the shim's HNSW loop, its IVF scanner, FAISS's IVF-PQ scan
// after the shim's coarse step, or FAISS's own) and lk_index_code_distances (the kernels against
// their references and FAISS's, for tests). Marshalling and dispatch only: the loops are
// hnsw_search.cpp's, ivf_scan.cpp's and ivfpq_search.cpp's.
//
// Owns: nothing beyond the calls; lk_index is shim_index.h's.
// Invariants: every entry point catches every C++ exception (guarded); parameters reach the core
// index below any pre-transform; a live graph is only ever searched by the shim's loop.
// Threads: any number of searches at once on one index, also during an lk_hnsw_insert.
#include "shim_index.h"

#include "distances.h"
#include "ivf_scan.h"
#include "ivfpq_search.h"
#include "sq_storage.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/IDSelector.h>
#include <omp.h>

#include <memory>
#include <stdexcept>

using lk::guarded;
using lk::search_core;

extern "C" {

int lk_index_search(const lk_index *index, int64_t n, const float *x, int64_t k,
                    const lk_search_params *params, float *distances, int64_t *labels,
                    char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        faiss::Index *ix = index->index;
        if (k <= 0) throw std::invalid_argument("k must be positive");
        if (params != nullptr && params->threads > 0) omp_set_num_threads(params->threads);
        std::unique_ptr<faiss::IDSelectorBitmap> selector;
        if (params != nullptr && params->bitmap != nullptr)
            selector.reset(new faiss::IDSelectorBitmap(params->bitmap_bytes, params->bitmap));

        // Parameters must reach the core index: IndexPreTransform forwards them in 1.7.3.
        faiss::Index *core = search_core(ix);
        faiss::SearchParametersHNSW hp;
        faiss::SearchParametersIVF ip;
        faiss::SearchParameters plain;
        faiss::SearchParameters *sp = nullptr;
        if (auto *hnsw = dynamic_cast<faiss::IndexHNSW *>(core)) {
            hp.efSearch = (params && params->ef_search > 0) ? params->ef_search
                                                            : hnsw->hnsw.efSearch;
            hp.sel = selector.get();
            sp = &hp;
        } else if (auto *ivf = dynamic_cast<faiss::IndexIVF *>(core)) {
            ip.nprobe = (params && params->nprobe > 0) ? (size_t)params->nprobe : ivf->nprobe;
            ip.sel = selector.get();
            sp = &ip;
        } else if (selector) {
            plain.sel = selector.get();
            sp = &plain;
        }
        // Every HNSW on flat storage takes the shim's loop; a live graph only ever does (FAISS's
        // own loop reads ntotal-sized state an insert is changing).
        if (ix == core && sp == &hp) {
            if (faiss::IndexHNSW *fast = lk::fast_hnsw(ix)) {
                if (params == nullptr || !params->faiss_search) {
                    lk::fast_hnsw_search(*fast, index->live.get(), n, x, k, hp.efSearch,
                                         params ? params->bitmap : nullptr, params ? params->bitmap_bytes : 0,
                                         distances, labels);
                    return;
                }
                if (index->live) throw std::invalid_argument("FAISS's own search is refused on a live HNSW graph");
            }
        }
        // IVF-Flat and IVF-SQ8/fp16 on in-memory or mmapped lists take the shim's scanner;
        // IVF-PQ its coarse step, then FAISS's own scan with the very params FAISS's search gets.
        if (ix == core && sp == &ip && (params == nullptr || !params->faiss_search)) {
            auto *ivf = static_cast<faiss::IndexIVF *>(core);
            const lk::IvfKind kind = lk::ivf_fast_kind(*ivf);
            const int threads = n > 1 ? omp_get_max_threads() : 1;
            if (kind == lk::IvfKind::pq) {
                lk::ivfpq_search(*ivf, n, x, k, ip, threads, distances, labels);
                return;
            }
            if (kind != lk::IvfKind::none) {
                lk::ivf_fast_search(*ivf, n, x, k, ip.nprobe, params ? params->bitmap : nullptr,
                                    params ? params->bitmap_bytes : 0, threads, distances, labels);
                return;
            }
        }
        ix->search(n, x, k, distances, labels, sp);
    });
}

int lk_index_code_distances(const lk_index *index, const float *x, const int64_t *positions, int64_t n,
                            int mode, float *out, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        auto *hnsw = lk::fast_hnsw(search_core(index->index));
        if (hnsw == nullptr || hnsw != index->index) throw std::invalid_argument("not an HNSW index on the shim's storage");
        const auto *storage = static_cast<const faiss::IndexFlatCodes *>(hnsw->storage);
        for (int64_t i = 0; i < n; i++)
            if (positions[i] < 0 || positions[i] >= storage->ntotal) throw std::out_of_range("position out of range");
        if (mode == 2) {
            // FAISS's own computer: its ScalarQuantizer's, or fvec_* over the rows.
            std::unique_ptr<faiss::DistanceComputer> dc;
            if (const lk::FastSQ *sq = lk::fast_sq(storage)) {
                auto *sqdc = sq->sq.get_distance_computer(sq->metric_type);
                sqdc->codes = sq->codes.data();
                sqdc->code_size = sq->code_size;
                dc.reset(sqdc);
            } else {
                auto *flat = static_cast<const faiss::IndexFlat *>(storage);
                dc.reset(flat->faiss::IndexFlat::get_FlatCodesDistanceComputer());
            }
            dc->set_query(x);
            for (int64_t i = 0; i < n; i++) out[i] = (*dc)(positions[i]);
            return;
        }
        lk::CodeSpace space = lk::code_space(*hnsw);
        lk::QueryCodes query(space, x, mode == 1);
        for (int64_t i = 0; i < n; i++) out[i] = query.faiss(storage->codes.data() + positions[i] * space.code_size);
    });
}

}  // extern "C"
