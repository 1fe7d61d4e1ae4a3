// faiss_shim.cpp: the extern "C" side of lookalike_faiss.h for an index's life: create, free,
// info and memory, train and add, reconstruct and flat rows, clone, write and read, OpenMP
// threads, and the IVF two-step add. Marshalling only, exception-proof.
//
// Owns: creating and freeing lk_index (shim_index.h). The other entry points are by concept in
// shim_hnsw.cpp (HNSW: efforts, the live graph, the build from rows, links) and shim_search.cpp
// (search, distance A/B).
// Invariants: every entry point catches every C++ exception (guarded); no loop or kernel lives
// here: distances.cpp has the kernels and FastFlat, sq_storage.cpp FastSQ, hnsw_search.cpp the
// HNSW search loop, hnsw_link.cpp the HNSW insertion loop and hnsw_build.cpp its two uses
// (hnsw_graph.h: what they share, and why a search may run during an insert), ivf_scan.cpp the
// IVF coarse quantizer and list scanner, ivfpq_search.cpp the IVF-PQ search around FAISS's
// list scan, index_memory.cpp the memory accounting.
// Threads: as lookalike_faiss.h says per function; the Swift index layer (FaissIndex) and the
// engine keep mutations apart.
#include "shim_index.h"

#include "distances.h"
#include "index_memory.h"
#include "ivf_scan.h"
#include "sq_storage.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexPQ.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/clone_index.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/invlists/OnDiskInvertedLists.h>
#include <omp.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

using lk::guarded;
using lk::search_core;

namespace {

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

// Whether training `ix` would run FAISS's polysemous training: a reordering of every PQ
// codebook for Hamming-distance filtering, which the factory turns on for every "PQm" spec and
// which no search of ours uses. On Debian's FAISS (no SIMD popcount) it dominated an IVF-PQ
// seal at 4096-d (still running after 24 minutes: Docs/benchmarks.md, "4096-d").
bool polysemous_training(const faiss::Index *ix) {
    if (auto *ivfpq = dynamic_cast<const faiss::IndexIVFPQ *>(ix)) return ivfpq->do_polysemous_training;
    if (auto *pq = dynamic_cast<const faiss::IndexPQ *>(ix)) return pq->do_polysemous_training;
    return false;
}

void no_polysemous_training(faiss::Index *ix) {
    if (auto *ivfpq = dynamic_cast<faiss::IndexIVFPQ *>(ix)) ivfpq->do_polysemous_training = false;
    if (auto *pq = dynamic_cast<faiss::IndexPQ *>(ix)) pq->do_polysemous_training = false;
}

extern "C" {

int lk_index_create(const char *spec, int dim, int metric, lk_index **out, char *err,
                    size_t errlen) {
    *out = nullptr;
    return guarded(err, errlen, [&] {
        if (dim <= 0) throw std::invalid_argument("dimension must be positive");
        faiss::MetricType m =
            metric == LK_METRIC_IP ? faiss::METRIC_INNER_PRODUCT : faiss::METRIC_L2;
        std::unique_ptr<faiss::Index> index(faiss::index_factory(dim, spec, m));
        no_polysemous_training(search_core(index.get()));
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
        info->pre_transform = core != ix ? 1 : 0;
        info->polysemous_training = polysemous_training(core) ? 1 : 0;
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
        int64_t count = lk::published_count(index);
        lk::add_memory(index->index, count, *memory);
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

int lk_index_reconstruct(const lk_index *index, int64_t position, float *out, char *err,
                         size_t errlen) {
    return guarded(err, errlen, [&] {
        // Flat indexes do not bound-check reconstruct; an out-of-range position must be an
        // error here, not a read past the codes.
        int64_t count = lk::published_count(index);
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
