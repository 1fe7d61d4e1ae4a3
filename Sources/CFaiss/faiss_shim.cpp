// The C++ side of lookalike_faiss.h: thin, boring, and exception-proof. Logic lives in Swift.
#include "lookalike_faiss.h"

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
#include <faiss/index_io.h>
#include <faiss/utils/distances.h>
#include <immintrin.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <typeinfo>

struct lk_index {
    faiss::Index *index;
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

// ---------------------------------------------------------------------------------------------
// Fast flat storage for HNSW. Debian's FAISS is built without SIMD code paths: HNSW spends ~90%
// of its time (search and build) in the scalar fvec_inner_product_ref. FAISS asks the storage
// index for its distance computer through a virtual method, so an IndexFlat subclass whose
// computer uses AVX2/FMA (chosen at run time; FAISS's own code otherwise) speeds up both, and
// is written to and read from files as a plain IndexFlat.

// LOOKALIKE_REFERENCE_DISTANCES=1 keeps FAISS's own code (for A/B measurements).
const bool kHasAVX2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                      std::getenv("LOOKALIKE_REFERENCE_DISTANCES") == nullptr;

__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 shuf = _mm_movehdup_ps(lo);
    __m128 sums = _mm_add_ps(lo, shuf);
    return _mm_cvtss_f32(_mm_add_ss(sums, _mm_movehl_ps(shuf, sums)));
}

__attribute__((target("avx2,fma"))) float dot_avx2(const float *x, const float *y, size_t d) {
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        a = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a);
        b = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), b);
    }
    for (; i + 8 <= d; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a);
    float sum = hsum(_mm256_add_ps(a, b));
    for (; i < d; i++) sum += x[i] * y[i];
    return sum;
}

__attribute__((target("avx2,fma"))) float l2_avx2(const float *x, const float *y, size_t d) {
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        __m256 u = _mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
        __m256 v = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8));
        a = _mm256_fmadd_ps(u, u, a);
        b = _mm256_fmadd_ps(v, v, b);
    }
    for (; i + 8 <= d; i += 8) {
        __m256 u = _mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
        a = _mm256_fmadd_ps(u, u, a);
    }
    float sum = hsum(_mm256_add_ps(a, b));
    for (; i < d; i++) sum += (x[i] - y[i]) * (x[i] - y[i]);
    return sum;
}

// Same contract as FAISS's FlatIPDis / FlatL2Dis: inner product (HNSW negates it) or squared L2.
struct FastFlatDistance : faiss::FlatCodesDistanceComputer {
    size_t d;
    bool inner_product;
    const float *query = nullptr;

    explicit FastFlatDistance(const faiss::IndexFlat &storage)
            : FlatCodesDistanceComputer(storage.codes.data(), storage.code_size),
              d(storage.d),
              inner_product(storage.metric_type == faiss::METRIC_INNER_PRODUCT) {}

    float distance(const float *x, const float *y) const {
        return inner_product ? dot_avx2(x, y, d) : l2_avx2(x, y, d);
    }
    void set_query(const float *x) override { query = x; }
    float distance_to_code(const uint8_t *code) override {
        return distance(query, reinterpret_cast<const float *>(code));
    }
    float symmetric_dis(idx_t i, idx_t j) override {
        const float *base = reinterpret_cast<const float *>(codes);
        return distance(base + i * d, base + j * d);
    }
};

struct FastFlat : faiss::IndexFlat {
    FastFlat(idx_t d, faiss::MetricType metric) : IndexFlat(d, metric) {}
    faiss::FlatCodesDistanceComputer *get_FlatCodesDistanceComputer() const override {
        return new FastFlatDistance(*this);
    }
};

// Gives an HNSW index with plain flat float storage the fast storage, moving the vectors.
void use_fast_storage(faiss::Index *index) {
    if (!kHasAVX2) return;
    auto *hnsw = dynamic_cast<faiss::IndexHNSW *>(search_core(index));
    if (hnsw == nullptr || hnsw->storage == nullptr) return;
    faiss::Index *storage = hnsw->storage;
    const std::type_info &type = typeid(*storage);
    if (type != typeid(faiss::IndexFlat) && type != typeid(faiss::IndexFlatL2) &&
        type != typeid(faiss::IndexFlatIP))
        return;
    auto *flat = static_cast<faiss::IndexFlat *>(storage);
    if (flat->metric_type != faiss::METRIC_L2 && flat->metric_type != faiss::METRIC_INNER_PRODUCT)
        return;
    auto *fast = new FastFlat(flat->d, flat->metric_type);
    fast->codes.swap(flat->codes);
    fast->ntotal = flat->ntotal;
    if (hnsw->own_fields) delete flat;
    hnsw->storage = fast;
    hnsw->own_fields = true;
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
        use_fast_storage(index.get());
        *out = new lk_index{index.release()};
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
        info->ntotal = ix->ntotal;
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
            info->fast_distances = dynamic_cast<FastFlat *>(hnsw->storage) != nullptr ? 1 : 0;
        } else if (auto *ivf = dynamic_cast<faiss::IndexIVF *>(core)) {
            info->kind = LK_KIND_IVF;
            info->nlist = (int64_t)ivf->nlist;
            if (ivf->ntotal > 0 && ivf->invlists) info->ivf_imbalance = ivf->invlists->imbalance_factor();
        } else if (dynamic_cast<faiss::IndexFlat *>(core)) {
            info->kind = LK_KIND_FLAT;
        }
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
        index->index->add(n, x);
    });
}

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
        ix->search(n, x, k, distances, labels, sp);
    });
}

int lk_index_remove(lk_index *index, const int64_t *positions, size_t n, size_t *removed,
                    char *err, size_t errlen) {
    *removed = 0;
    return guarded(err, errlen, [&] {
        faiss::IDSelectorBatch sel(n, positions);
        *removed = index->index->remove_ids(sel);
    });
}

int lk_index_reconstruct(const lk_index *index, int64_t position, float *out, char *err,
                         size_t errlen) {
    return guarded(err, errlen, [&] {
        // Flat indexes do not bound-check reconstruct; an out-of-range position must be an
        // error here, not a read past the codes.
        if (position < 0 || position >= index->index->ntotal)
            throw std::out_of_range("position out of range");
        index->index->reconstruct(position, out);
    });
}

int lk_index_clone(const lk_index *index, lk_index **out, char *err, size_t errlen) {
    *out = nullptr;
    return guarded(err, errlen, [&] {
        std::unique_ptr<faiss::Index> copy(faiss::clone_index(index->index));
        use_fast_storage(copy.get());
        *out = new lk_index{copy.release()};
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
        use_fast_storage(index.get());
        *out = new lk_index{index.release()};
    });
}

const float *lk_index_flat_vectors(const lk_index *index) {
    faiss::Index *ix = index->index;
    // Behind a pre-transform (PCA, OPQ) the stored vectors are not in the query's space.
    if (dynamic_cast<faiss::IndexPreTransform *>(ix) != nullptr) return nullptr;
    if (auto *hnsw = dynamic_cast<faiss::IndexHNSW *>(ix)) ix = hnsw->storage;
    auto *flat = dynamic_cast<faiss::IndexFlat *>(ix);  // every IndexFlat stores float32 rows
    if (flat == nullptr || flat->ntotal == 0) return nullptr;
    return reinterpret_cast<const float *>(flat->codes.data());
}

void lk_set_omp_threads(int n) {
    if (n > 0) omp_set_num_threads(n);
}

}  // extern "C"
