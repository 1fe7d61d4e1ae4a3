// distances.cpp: the AVX2/FMA kernels declared in distances.h, and the swap to the fast storages
// (FastFlat here, FastSQ in sq_storage.h).
// Debian's FAISS is built without SIMD code paths: HNSW spent ~90% of its time (search and
// build) in the scalar fvec_inner_product_ref before these. Functions compiled with
// target("avx2,fma") or LK_SIMD (that and f16c, which every AVX2+FMA CPU has) run only when
// kUseAVX2 says the CPU has them. The one-row kernels are reduce_rows (distances.h) with their
// own terms.
// Threads: the kernels are pure (any thread); FastFlat is read-only after train/add, as FAISS indexes are.
#include "distances.h"
#include "sq_storage.h"

#include <faiss/IndexPreTransform.h>
#include <immintrin.h>

#include <cstdlib>
#include <typeinfo>

namespace lk {

const bool kUseAVX2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                      std::getenv("LOOKALIKE_REFERENCE_DISTANCES") == nullptr;

LK_SIMD float dot_avx2(const float *x, const float *y, size_t d) {
    return reduce_rows(
        d, [&](size_t i, __m256 acc) LK_SIMD { return _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc); },
        [&](size_t i, float s) { return s + x[i] * y[i]; });
}

LK_SIMD float l2_avx2(const float *x, const float *y, size_t d) {
    return reduce_rows(
        d,
        [&](size_t i, __m256 acc) LK_SIMD {
            __m256 u = _mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
            return _mm256_fmadd_ps(u, u, acc);
        },
        [&](size_t i, float s) { return s + (x[i] - y[i]) * (x[i] - y[i]); });
}

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

faiss::IndexHNSW *flat_hnsw(faiss::Index *index) {
    auto *hnsw = dynamic_cast<faiss::IndexHNSW *>(index);
    if (hnsw == nullptr || hnsw->storage == nullptr) return nullptr;
    if (typeid(*hnsw->storage) != typeid(FastFlat)) return nullptr;
    return hnsw;
}

faiss::IndexHNSW *fast_hnsw(faiss::Index *index) {
    if (faiss::IndexHNSW *hnsw = flat_hnsw(index)) return hnsw;
    auto *hnsw = dynamic_cast<faiss::IndexHNSW *>(index);
    if (hnsw == nullptr || fast_sq(hnsw->storage) == nullptr) return nullptr;
    return hnsw;
}

namespace {

// Replaces an HNSW index's storage, moving the codes; the old storage is freed if owned.
void swap_storage(faiss::IndexHNSW *hnsw, faiss::IndexFlatCodes *from, faiss::IndexFlatCodes *to) {
    to->codes.swap(from->codes);
    to->ntotal = from->ntotal;
    if (hnsw->own_fields) delete from;
    hnsw->storage = to;
    hnsw->own_fields = true;
}

}  // namespace

void use_fast_storage(faiss::Index *index) {
    while (auto *pt = dynamic_cast<faiss::IndexPreTransform *>(index)) index = pt->index;
    auto *hnsw = dynamic_cast<faiss::IndexHNSW *>(index);
    if (hnsw == nullptr || hnsw->storage == nullptr) return;
    faiss::Index *storage = hnsw->storage;
    const std::type_info &type = typeid(*storage);
    if (type == typeid(faiss::IndexScalarQuantizer)) {
        auto *sq = static_cast<faiss::IndexScalarQuantizer *>(storage);
        if (!FastSQ::supports(*sq)) return;
        std::vector<uint8_t> codes;
        codes.swap(sq->codes);  // FastSQ copies the settings, not the codes
        auto *fast = new FastSQ(*sq);
        sq->codes.swap(codes);
        swap_storage(hnsw, sq, fast);
        return;
    }
    if (type != typeid(faiss::IndexFlat) && type != typeid(faiss::IndexFlatL2) &&
        type != typeid(faiss::IndexFlatIP))
        return;
    auto *flat = static_cast<faiss::IndexFlat *>(storage);
    if (flat->metric_type != faiss::METRIC_L2 && flat->metric_type != faiss::METRIC_INNER_PRODUCT)
        return;
    swap_storage(hnsw, flat, new FastFlat(flat->d, flat->metric_type));
}

}  // namespace lk
