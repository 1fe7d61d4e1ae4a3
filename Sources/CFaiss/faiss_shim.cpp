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
#include <faiss/invlists/OnDiskInvertedLists.h>
#include <faiss/utils/distances.h>
#include <immintrin.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <queue>
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

// ---------------------------------------------------------------------------------------------
// Fast HNSW search. FAISS 1.7.3's search loop computes one distance at a time, allocates and
// zeroes a visited table of ntotal bytes per call (one call per query in the engine), and keeps
// candidates in a linear-scan heap. For an HNSW index on the fast storage, this loop walks the
// same graph the standard way (greedy descent on the upper levels, then a beam of efSearch on
// level 0), with a per-thread visited table reset by a stamp, four distances at a time sharing
// the query loads, and the next vectors prefetched.
// With a selector bitmap (tombstones, filters) it keeps FAISS's semantics: the walk ignores
// the bitmap (so a sparse filter does not strand it), and the k results are the nearest
// members among every node whose distance it computed.

// Four dot products or squared distances of x against y0..y3 (d a multiple of 8 in the loop).
__attribute__((target("avx2,fma"))) void four_avx2(bool ip, const float *x, const float *const y[4],
                                                   size_t d, float out[4]) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
           a3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= d; i += 8) {
        __m256 q = _mm256_loadu_ps(x + i);
        __m256 v0 = _mm256_loadu_ps(y[0] + i), v1 = _mm256_loadu_ps(y[1] + i);
        __m256 v2 = _mm256_loadu_ps(y[2] + i), v3 = _mm256_loadu_ps(y[3] + i);
        if (ip) {
            a0 = _mm256_fmadd_ps(q, v0, a0);
            a1 = _mm256_fmadd_ps(q, v1, a1);
            a2 = _mm256_fmadd_ps(q, v2, a2);
            a3 = _mm256_fmadd_ps(q, v3, a3);
        } else {
            v0 = _mm256_sub_ps(q, v0), v1 = _mm256_sub_ps(q, v1);
            v2 = _mm256_sub_ps(q, v2), v3 = _mm256_sub_ps(q, v3);
            a0 = _mm256_fmadd_ps(v0, v0, a0);
            a1 = _mm256_fmadd_ps(v1, v1, a1);
            a2 = _mm256_fmadd_ps(v2, v2, a2);
            a3 = _mm256_fmadd_ps(v3, v3, a3);
        }
    }
    out[0] = hsum(a0), out[1] = hsum(a1), out[2] = hsum(a2), out[3] = hsum(a3);
    for (; i < d; i++)
        for (int j = 0; j < 4; j++) out[j] += ip ? x[i] * y[j][i] : (x[i] - y[j][i]) * (x[i] - y[j][i]);
}

struct FastHNSWSearch {
    const faiss::HNSW &hnsw;
    const float *base;
    size_t d;
    bool ip;

    // Smaller is closer: -dot for inner product (as FAISS's HNSW), squared L2 otherwise.
    float dist(const float *x, int64_t id) const {
        const float *y = base + id * d;
        return ip ? -dot_avx2(x, y, d) : l2_avx2(x, y, d);
    }

    // Distances of x to n ids (n <= the buffer), four at a time.
    void dists(const float *x, const int *ids, int n, float *out) const {
        int j = 0;
        for (; j + 4 <= n; j += 4) {
            const float *y[4] = {base + (int64_t)ids[j] * d, base + (int64_t)ids[j + 1] * d,
                                 base + (int64_t)ids[j + 2] * d, base + (int64_t)ids[j + 3] * d};
            four_avx2(ip, x, y, d, out + j);
            if (ip) for (int t = 0; t < 4; t++) out[j + t] = -out[j + t];
        }
        for (; j < n; j++) out[j] = dist(x, ids[j]);
    }

    static std::vector<uint16_t> &visited(size_t n, uint16_t &stamp) {
        thread_local std::vector<uint16_t> table;
        thread_local uint16_t current = 0;
        if (table.size() < n) table.assign(n, 0), current = 0;
        if (++current == 0) std::fill(table.begin(), table.end(), 0), current = 1;
        stamp = current;
        return table;
    }

    // members: a bitmap over positions (bit i of byte i/8), or null for every position.
    void search(const float *x, int64_t ntotal, int64_t k, int ef, const uint8_t *members, size_t member_bytes,
                float *out_d, int64_t *out_i) const {
        auto is_member = [&](int v) {
            return members == nullptr || ((size_t)(v >> 3) < member_bytes && ((members[v >> 3] >> (v & 7)) & 1));
        };
        for (int64_t j = 0; j < k; j++) out_d[j] = std::numeric_limits<float>::max(), out_i[j] = -1;
        if (hnsw.entry_point < 0 || ntotal == 0) return;
        int ep = hnsw.entry_point;
        float d_ep = dist(x, ep);
        int ids[512];
        float ds[512];
        for (int level = hnsw.max_level; level >= 1; level--) {
            for (bool moved = true; moved;) {
                moved = false;
                size_t b, e;
                hnsw.neighbor_range(ep, level, &b, &e);
                int n = 0;
                for (size_t i = b; i < e && hnsw.neighbors[i] >= 0 && n < 512; i++) ids[n++] = hnsw.neighbors[i];
                dists(x, ids, n, ds);
                for (int i = 0; i < n; i++)
                    if (ds[i] < d_ep) d_ep = ds[i], ep = ids[i], moved = true;
            }
        }
        ef = std::max<int>(ef, (int)k);
        uint16_t stamp;
        std::vector<uint16_t> &seen = visited(ntotal, stamp);
        using Node = std::pair<float, int>;
        std::priority_queue<Node, std::vector<Node>, std::greater<Node>> candidates;  // closest first
        std::priority_queue<Node> results;  // farthest first, at most ef
        std::priority_queue<Node> kept;     // with a bitmap: the k nearest members, farthest first
        auto keep = [&](float dv, int v) {
            if (members == nullptr || !is_member(v)) return;
            if ((int64_t)kept.size() < k) kept.emplace(dv, v);
            else if (dv < kept.top().first) kept.pop(), kept.emplace(dv, v);
        };
        candidates.emplace(d_ep, ep);
        results.emplace(d_ep, ep);
        keep(d_ep, ep);
        seen[ep] = stamp;
        while (!candidates.empty()) {
            Node c = candidates.top();
            if ((int)results.size() >= ef && c.first > results.top().first) break;
            candidates.pop();
            size_t b, e;
            hnsw.neighbor_range(c.second, 0, &b, &e);
            int n = 0;
            for (size_t i = b; i < e && n < 512; i++) {
                int v = hnsw.neighbors[i];
                if (v < 0) break;
                if (seen[v] == stamp) continue;
                seen[v] = stamp;
                _mm_prefetch(reinterpret_cast<const char *>(base + (int64_t)v * d), _MM_HINT_T0);
                ids[n++] = v;
            }
            dists(x, ids, n, ds);
            for (int i = 0; i < n; i++) {
                keep(ds[i], ids[i]);
                if ((int)results.size() < ef || ds[i] < results.top().first) {
                    candidates.emplace(ds[i], ids[i]);
                    results.emplace(ds[i], ids[i]);
                    if ((int)results.size() > ef) results.pop();
                }
            }
        }
        std::priority_queue<Node> &best = members != nullptr ? kept : results;
        while ((int64_t)best.size() > k) best.pop();
        for (int64_t j = (int64_t)best.size() - 1; j >= 0; j--) {
            out_d[j] = ip ? -best.top().first : best.top().first;
            out_i[j] = best.top().second;
            best.pop();
        }
    }
};

// Runs the fast search when it applies (see above); false leaves the search to FAISS.
bool fast_hnsw_search(faiss::Index *ix, int64_t n, const float *x, int64_t k, int ef,
                      const uint8_t *members, size_t member_bytes, float *distances, int64_t *labels) {
    auto *hnsw = dynamic_cast<faiss::IndexHNSW *>(ix);
    if (hnsw == nullptr || hnsw->storage == nullptr) return false;
    if (typeid(*hnsw->storage) != typeid(FastFlat)) return false;
    auto *flat = static_cast<FastFlat *>(hnsw->storage);
    FastHNSWSearch s{hnsw->hnsw, reinterpret_cast<const float *>(flat->codes.data()), (size_t)flat->d,
                     flat->metric_type == faiss::METRIC_INNER_PRODUCT};
#pragma omp parallel for if (n > 1)
    for (int64_t q = 0; q < n; q++)
        s.search(x + q * flat->d, flat->ntotal, k, ef, members, member_bytes, distances + q * k, labels + q * k);
    return true;
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
        if (ix == core && kHasAVX2 && sp == &hp &&
            fast_hnsw_search(ix, n, x, k, hp.efSearch, params ? params->bitmap : nullptr,
                             params ? params->bitmap_bytes : 0, distances, labels))
            return;
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
        // Mmapped IVF lists come back as OnDiskInvertedLists, whose every search starts 32
        // prefetch threads and serialises concurrent searches on one mutex (measured: 7x
        // slower over the server). The kernel pages the lists in by itself: no prefetch.
        if (auto *ivf = dynamic_cast<faiss::IndexIVF *>(search_core(index.get())))
            if (auto *ondisk = dynamic_cast<faiss::OnDiskInvertedLists *>(ivf->invlists))
                ondisk->prefetch_nthread = 0;
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

int lk_index_hnsw_links(const lk_index *index, int64_t position, int *levels, int *counts,
                        int max_levels, int64_t *links, size_t capacity, size_t *total,
                        char *err, size_t errlen) {
    *levels = 0;
    *total = 0;
    return guarded(err, errlen, [&] {
        auto *hnsw = dynamic_cast<faiss::IndexHNSW *>(search_core(index->index));
        if (hnsw == nullptr) throw std::invalid_argument("not an HNSW index");
        const faiss::HNSW &graph = hnsw->hnsw;
        if (position < 0 || position >= (int64_t)graph.levels.size())
            throw std::out_of_range("position out of range");
        *levels = graph.levels[position];
        for (int level = 0; level < *levels; level++) {
            size_t begin, end;
            graph.neighbor_range(position, level, &begin, &end);
            int count = 0;
            // A level's slots are filled from the start; -1 marks the unused rest.
            for (size_t i = begin; i < end && graph.neighbors[i] >= 0; i++, count++) {
                if (*total < capacity) links[*total] = graph.neighbors[i];
                ++*total;
            }
            if (level < max_levels) counts[level] = count;
        }
    });
}

void lk_set_omp_threads(int n) {
    if (n > 0) omp_set_num_threads(n);
}

}  // extern "C"
