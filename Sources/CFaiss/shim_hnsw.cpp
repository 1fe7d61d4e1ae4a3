// shim_hnsw.cpp: the extern "C" side of lookalike_faiss.h for HNSW: efforts, the live graph
// (reserve, insert, build priority), the build at once from rows, and an element's links (VLINKS).
// Marshalling and checks only: the loops are hnsw_build.cpp's and hnsw_link.cpp's.
//
// Owns: nothing beyond the calls; lk_index is shim_index.h's.
// Invariants: every entry point catches every C++ exception (guarded); a live graph only grows
// through lk_hnsw_insert (lk_index_add forwards to it, faiss_shim.cpp); lk_hnsw_build refuses a
// live graph, a non-empty index and storage the shim's loops do not know.
// Threads: as lookalike_faiss.h says per function.
#include "shim_index.h"

#include "distances.h"
#include "sq_storage.h"

#include <faiss/IndexHNSW.h>

#include <stdexcept>

using lk::guarded;
using lk::search_core;

extern "C" {

int lk_index_set_hnsw(lk_index *index, int ef_construction, int ef_search, char *err,
                      size_t errlen) {
    return guarded(err, errlen, [&] {
        auto *hnsw = dynamic_cast<faiss::IndexHNSW *>(search_core(index->index));
        if (hnsw == nullptr) throw std::invalid_argument("not an HNSW index");
        if (ef_construction > 0) hnsw->hnsw.efConstruction = ef_construction;
        if (ef_search > 0) hnsw->hnsw.efSearch = ef_search;
    });
}

int lk_hnsw_reserve(lk_index *index, int64_t capacity, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        faiss::IndexHNSW *hnsw = lk::flat_hnsw(index->index);
        if (hnsw == nullptr)
            throw std::invalid_argument("lk_hnsw_reserve needs an HNSW index with flat L2/IP storage (HNSWn)");
        lk::hnsw_reserve(*hnsw, index->live, capacity);
    });
}

int lk_hnsw_insert(lk_index *index, int64_t n, const float *x, int threads, int ef_construction, char *err,
                   size_t errlen) {
    return guarded(err, errlen, [&] {
        if (!index->live) throw std::invalid_argument("lk_hnsw_insert before lk_hnsw_reserve");
        lk::hnsw_insert(*lk::flat_hnsw(index->index), *index->live, n, x, threads, ef_construction);
    });
}

void lk_set_build_priority(int nice, int idle) { lk::set_build_priority(nice, idle != 0); }

int lk_hnsw_build(lk_index *index, int64_t n, const float *x, int threads, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        faiss::IndexHNSW *hnsw = lk::fast_hnsw(index->index);
        if (hnsw == nullptr)
            throw std::invalid_argument("lk_hnsw_build needs an HNSW index with flat, SQ8 or SQfp16 L2/IP storage "
                                        "(HNSWn, HNSWn,SQ8, HNSWn,SQfp16) and no pre-transform");
        if (index->live) throw std::invalid_argument("lk_hnsw_build on a live graph (grow it with lk_hnsw_insert)");
        lk::hnsw_build(*hnsw, n, x, threads);
    });
}

int lk_index_hnsw_links(const lk_index *index, int64_t position, int *levels, int *counts,
                        int max_levels, int64_t *links, size_t capacity, size_t *total,
                        char *err, size_t errlen) {
    *levels = 0;
    *total = 0;
    return guarded(err, errlen, [&] {
        auto *hnsw = dynamic_cast<faiss::IndexHNSW *>(search_core(index->index));
        if (hnsw == nullptr) throw std::invalid_argument("not an HNSW index");
        const faiss::HNSW &graph = hnsw->hnsw;
        int64_t count = index->live ? index->live->count.load(std::memory_order_acquire)
                                    : (int64_t)graph.levels.size();
        if (position < 0 || position >= count) throw std::out_of_range("position out of range");
        *levels = graph.levels[position];
        for (int level = 0; level < *levels; level++) {
            size_t begin, end;
            graph.neighbor_range(position, level, &begin, &end);
            int n = 0;
            // A level's slots are filled from the start; -1 marks the unused rest.
            // Read as a search does (hnsw_graph.h): links of unpublished nodes are absent.
            for (size_t i = begin; i < end; i++) {
                int32_t v = lk::link_load(graph.neighbors.data() + i);
                if (v < 0) break;
                if (v >= count) continue;
                // counts[] counts what was written, so that with a live graph (whose lists may
                // grow between a sizing call and this one) they never add up beyond `capacity`.
                if (*total < capacity) links[*total] = v, ++n;
                ++*total;
            }
            if (level < max_levels) counts[level] = n;
        }
    });
}

}  // extern "C"
