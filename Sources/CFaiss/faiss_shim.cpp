// faiss_shim.cpp: the extern "C" side of lookalike_faiss.h: marshalling, and exception-proof.
//
// Owns: lk_index (a faiss::Index plus, once lk_hnsw_reserve ran, its LiveGraph).
// Invariants: every entry point catches every C++ exception (guarded); no loop or kernel lives
// here: distances.cpp has the kernels and FastFlat, hnsw_search.cpp the HNSW search loop,
// hnsw_build.cpp the HNSW insertion loop (hnsw_graph.h: what they share, and why a search may
// run during an insert), ivf_scan.cpp the IVF coarse quantizer and list scanner.
// Threads: as lookalike_faiss.h says per function; the Swift index layer (FaissIndex) and the
// engine keep mutations apart.
#include "lookalike_faiss.h"

#include "distances.h"
#include "hnsw_graph.h"
#include "index_memory.h"
#include "ivf_scan.h"
#include "sq_storage.h"

#include <faiss/Index.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexPQ.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/clone_index.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/index_factory.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <faiss/invlists/OnDiskInvertedLists.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>

struct lk_index {
    faiss::Index *index;
    std::unique_ptr<lk::LiveGraph> live;  // set by lk_hnsw_reserve
};

namespace {

void set_error(char *err, size_t errlen, const char *msg) {
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
faiss::Index *search_core(faiss::Index *index) {
    while (auto *pt = dynamic_cast<faiss::IndexPreTransform *>(index)) index = pt->index;
    return index;
}

int64_t train_hint(faiss::Index *index) {
    faiss::Index *core = search_core(index);
    int64_t hint = 0;
    // FAISS's own k-means warns below 39 points per centroid.
    if (auto *ivf = dynamic_cast<faiss::IndexIVF *>(core)) {
        hint = 39 * (int64_t)ivf->nlist;
        if (auto *ivfpq = dynamic_cast<faiss::IndexIVFPQ *>(core))
            hint = std::max<int64_t>(hint, 39 * ((int64_t)1 << ivfpq->pq.nbits));
    } else if (auto *pq = dynamic_cast<faiss::IndexPQ *>(core)) {
        hint = 39 * ((int64_t)1 << pq->pq.nbits);
    } else if (dynamic_cast<faiss::IndexScalarQuantizer *>(core)) {
        hint = 1000;
    } else if (auto *hnsw = dynamic_cast<faiss::IndexHNSW *>(core)) {
        if (!hnsw->is_trained) hint = train_hint(hnsw->storage);
    }
    if (!index->is_trained && hint == 0) hint = 1000;
    return hint;
}


}  // namespace

extern "C" {

int lk_index_create(const char *spec, int dim, int metric, lk_index **out, char *err,
                    size_t errlen) {
    *out = nullptr;
    return guarded(err, errlen, [&] {
        if (dim <= 0) throw std::invalid_argument("dimension must be positive");
        faiss::MetricType m =
            metric == LK_METRIC_IP ? faiss::METRIC_INNER_PRODUCT : faiss::METRIC_L2;
        std::unique_ptr<faiss::Index> index(faiss::index_factory(dim, spec, m));
        lk::use_fast_storage(index.get());
        *out = new lk_index{index.release(), nullptr};
    });
}

void lk_index_free(lk_index *index) {
    if (index == nullptr) return;
    delete index->index;
    delete index;
}

int lk_index_info_get(const lk_index *index, lk_index_info *info, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        faiss::Index *ix = index->index;
        std::memset(info, 0, sizeof(*info));
        info->dim = (int)ix->d;
        info->metric = ix->metric_type == faiss::METRIC_INNER_PRODUCT ? LK_METRIC_IP
                                                                       : LK_METRIC_L2;
        info->is_trained = ix->is_trained ? 1 : 0;
        // A live graph's size is its published count (ntotal is the inserter's to write).
        info->ntotal = index->live ? index->live->count.load(std::memory_order_acquire) : ix->ntotal;
        info->train_hint = train_hint(ix);
        // Not every index type has a standalone codec (HNSW does not): report 0 there.
        try {
            info->code_size = (int64_t)ix->sa_code_size();
        } catch (const std::exception &) {
            info->code_size = 0;
        }
        faiss::Index *core = search_core(ix);
        if (auto *hnsw = dynamic_cast<faiss::IndexHNSW *>(core)) {
            info->kind = LK_KIND_HNSW;
            info->hnsw_m = hnsw->hnsw.nb_neighbors(1);
            info->hnsw_ef_search = hnsw->hnsw.efSearch;
            info->hnsw_ef_construction = hnsw->hnsw.efConstruction;
            info->fast_distances = lk::fast_hnsw(hnsw) != nullptr && lk::kUseAVX2 ? 1 : 0;
            if (lk::flat_hnsw(hnsw)) info->storage = LK_STORAGE_FLAT;
            else if (lk::FastSQ *sq = lk::fast_sq(hnsw->storage))
                info->storage = sq->space.codec == lk::Codec::fp16 ? LK_STORAGE_FP16 : LK_STORAGE_SQ8;
        } else if (auto *ivf = dynamic_cast<faiss::IndexIVF *>(core)) {
            info->kind = LK_KIND_IVF;
            info->nlist = (int64_t)ivf->nlist;
            info->fast_distances = ix == core && lk::ivf_fast_kind(*ivf) != lk::IvfKind::none ? 1 : 0;
            if (ivf->ntotal > 0 && ivf->invlists) info->ivf_imbalance = ivf->invlists->imbalance_factor();
        } else if (dynamic_cast<faiss::IndexFlat *>(core)) {
            info->kind = LK_KIND_FLAT;
        }
    });
}

int lk_index_memory_get(const lk_index *index, lk_index_memory *memory, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        std::memset(memory, 0, sizeof(*memory));
        int64_t count = index->live ? index->live->count.load(std::memory_order_acquire) : index->index->ntotal;
        lk::add_memory(index->index, count, *memory);
    });
}

int lk_index_set_hnsw(lk_index *index, int ef_construction, int ef_search, char *err,
                      size_t errlen) {
    return guarded(err, errlen, [&] {
        auto *hnsw = dynamic_cast<faiss::IndexHNSW *>(search_core(index->index));
        if (hnsw == nullptr) throw std::invalid_argument("not an HNSW index");
        if (ef_construction > 0) hnsw->hnsw.efConstruction = ef_construction;
        if (ef_search > 0) hnsw->hnsw.efSearch = ef_search;
    });
}

int lk_index_train(lk_index *index, int64_t n, const float *x, char *err, size_t errlen) {
    return guarded(err, errlen, [&] { index->index->train(n, x); });
}

int lk_index_add(lk_index *index, int64_t n, const float *x, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        if (!index->index->is_trained) throw std::invalid_argument("index is not trained");
        // A reserved graph grows through the safe loop only (FAISS's add would move its arrays).
        if (index->live) return lk::hnsw_insert(*lk::flat_hnsw(index->index), *index->live, n, x, 0, 0);
        index->index->add(n, x);
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
        // IVF-Flat and IVF-SQ8/fp16 on in-memory or mmapped lists take the shim's scanner.
        if (ix == core && sp == &ip && (params == nullptr || !params->faiss_search)) {
            auto *ivf = static_cast<faiss::IndexIVF *>(core);
            if (lk::ivf_fast_kind(*ivf) != lk::IvfKind::none) {
                lk::ivf_fast_search(*ivf, n, x, k, ip.nprobe, params ? params->bitmap : nullptr,
                                    params ? params->bitmap_bytes : 0, n > 1 ? omp_get_max_threads() : 1,
                                    distances, labels);
                return;
            }
        }
        ix->search(n, x, k, distances, labels, sp);
    });
}

int lk_index_reconstruct(const lk_index *index, int64_t position, float *out, char *err,
                         size_t errlen) {
    return guarded(err, errlen, [&] {
        // Flat indexes do not bound-check reconstruct; an out-of-range position must be an
        // error here, not a read past the codes.
        int64_t count = index->live ? index->live->count.load(std::memory_order_acquire) : index->index->ntotal;
        if (position < 0 || position >= count)
            throw std::out_of_range("position out of range");
        index->index->reconstruct(position, out);
    });
}

int lk_index_clone(const lk_index *index, lk_index **out, char *err, size_t errlen) {
    *out = nullptr;
    return guarded(err, errlen, [&] {
        std::unique_ptr<faiss::Index> copy;
        if (dynamic_cast<faiss::IndexHNSW *>(search_core(index->index)) != nullptr) {
            faiss::VectorIOWriter writer;
            faiss::write_index(index->index, &writer);
            faiss::VectorIOReader reader;
            reader.data.swap(writer.data);
            copy.reset(faiss::read_index(&reader));
        } else {
            copy.reset(faiss::clone_index(index->index));
        }
        lk::use_fast_storage(copy.get());
        *out = new lk_index{copy.release(), nullptr};
    });
}

int lk_index_write(const lk_index *index, const char *path, char *err, size_t errlen) {
    return guarded(err, errlen, [&] { faiss::write_index(index->index, path); });
}

int lk_index_read(const char *path, int mmap, lk_index **out, char *err, size_t errlen) {
    *out = nullptr;
    return guarded(err, errlen, [&] {
        int flags = mmap ? faiss::IO_FLAG_MMAP : 0;
        std::unique_ptr<faiss::Index> index(faiss::read_index(path, flags));
        lk::use_fast_storage(index.get());
        // Mmapped IVF lists come back as OnDiskInvertedLists, whose every search starts 32
        // prefetch threads and serialises concurrent searches on one mutex (measured: 7x
        // slower over the server). The kernel pages the lists in by itself: no prefetch.
        if (auto *ivf = dynamic_cast<faiss::IndexIVF *>(search_core(index.get())))
            if (auto *ondisk = dynamic_cast<faiss::OnDiskInvertedLists *>(ivf->invlists))
                ondisk->prefetch_nthread = 0;
        *out = new lk_index{index.release(), nullptr};
    });
}

const float *lk_index_flat_vectors(const lk_index *index) {
    faiss::Index *ix = index->index;
    // Behind a pre-transform (PCA, OPQ) the stored vectors are not in the query's space.
    if (dynamic_cast<faiss::IndexPreTransform *>(ix) != nullptr) return nullptr;
    if (auto *hnsw = dynamic_cast<faiss::IndexHNSW *>(ix)) ix = hnsw->storage;
    auto *flat = dynamic_cast<faiss::IndexFlat *>(ix);  // every IndexFlat stores float32 rows
    int64_t count = index->live ? index->live->count.load(std::memory_order_acquire) : flat ? flat->ntotal : 0;
    if (flat == nullptr || count == 0) return nullptr;
    return reinterpret_cast<const float *>(flat->codes.data());
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

void lk_set_omp_threads(int n) {
    if (n > 0) omp_set_num_threads(n);
}

// A live IVF segment adds in two steps so that searches wait only for the list appends: the
// assignment reads the trained quantizer alone (safe beside searches), the add writes lists.
int lk_ivf_assign(const lk_index *index, int64_t n, const float *x, int64_t *lists, char *err,
                  size_t errlen) {
    return guarded(err, errlen, [&] {
        auto *ivf = dynamic_cast<faiss::IndexIVF *>(index->index);
        if (ivf == nullptr) throw std::invalid_argument("not an IVF index (with no pre-transform)");
        if (!ivf->is_trained) throw std::invalid_argument("index is not trained");
        ivf->quantizer->assign(n, x, lists);
    });
}

int lk_ivf_add_assigned(lk_index *index, int64_t n, const float *x, const int64_t *lists,
                        char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        auto *ivf = dynamic_cast<faiss::IndexIVF *>(index->index);
        if (ivf == nullptr) throw std::invalid_argument("not an IVF index (with no pre-transform)");
        if (!ivf->is_trained) throw std::invalid_argument("index is not trained");
        for (int64_t i = 0; i < n; i++) {
            if (lists[i] < 0 || lists[i] >= (int64_t)ivf->nlist) throw std::out_of_range("list number out of range");
        }
        ivf->add_core(n, x, nullptr, lists);  // ids: the positions ntotal.. (as add does)
    });
}

}  // extern "C"
