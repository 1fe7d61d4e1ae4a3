// shim_index.h: what the extern "C" files of the shim (faiss_shim.cpp, shim_hnsw.cpp,
// shim_search.cpp) share: the lk_index handle and the exception guard every entry point runs in.
//
// Owns: struct lk_index (a faiss::Index plus, once lk_hnsw_reserve ran, its LiveGraph).
// Invariants: every entry point of lookalike_faiss.h runs its body through guarded(), so no C++
// exception crosses into Swift; search_core never returns null for a non-null index.
// Threads: pure helpers; the handle's rules are lookalike_faiss.h's.
#ifndef LOOKALIKE_SHIM_INDEX_H
#define LOOKALIKE_SHIM_INDEX_H

#include "lookalike_faiss.h"

#include "hnsw_graph.h"

#include <faiss/Index.h>
#include <faiss/IndexPreTransform.h>

#include <cstring>
#include <exception>
#include <memory>
#include <new>

struct lk_index {
    faiss::Index *index;
    std::unique_ptr<lk::LiveGraph> live;  // set by lk_hnsw_reserve
};

namespace lk {

inline void set_error(char *err, size_t errlen, const char *msg) {
    if (err == nullptr || errlen == 0) return;
    std::strncpy(err, msg, errlen - 1);
    err[errlen - 1] = '\0';
}

// Runs body, turning any exception into -1 and a message. Every entry point goes through this.
template <typename F>
int guarded(char *err, size_t errlen, F body) {
    try {
        body();
        return 0;
    } catch (const std::bad_alloc &) {
        set_error(err, errlen, "out of memory");
    } catch (const std::exception &e) {
        set_error(err, errlen, e.what());
    } catch (...) {
        set_error(err, errlen, "unknown FAISS error");
    }
    return -1;
}

// The index that does the searching, below any pre-transform (OPQ, PCA) wrapper.
inline faiss::Index *search_core(faiss::Index *index) {
    while (auto *pt = dynamic_cast<faiss::IndexPreTransform *>(index)) index = pt->index;
    return index;
}

// Positions a reader may touch: a live graph's published count, else ntotal.
inline int64_t published_count(const lk_index *index) {
    return index->live ? index->live->count.load(std::memory_order_acquire) : index->index->ntotal;
}

}  // namespace lk

#endif
