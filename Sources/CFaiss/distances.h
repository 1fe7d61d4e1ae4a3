// distances.h: the distance kernels of the HNSW fast paths, and the flat storage that uses them.
//
// Owns: the kernels (AVX2/FMA and a scalar fallback, chosen once at start-up) and FastFlat, the
// IndexFlat subclass every HNSW index with plain flat float storage gets (use_fast_storage;
// compressed storages get FastSQ, sq_storage.h).
// Invariants:
//   - dot/l2 compute the same value as FAISS's fvec_inner_product / fvec_L2sqr up to float
//     rounding, for any dimension (tails handled); four() equals four calls of the single one.
//   - FastFlat is written to and read from files as a plain IndexFlat (FAISS's own writer
//     dynamic_casts it), so files stay readable by any FAISS.
//   - kUseAVX2 is false when the CPU lacks AVX2 or FMA, or when LOOKALIKE_REFERENCE_DISTANCES=1
//     is set (FAISS's own scalar code, for A/B measurements). FastFlat is installed either way,
//     so the shim's search loop applies to every HNSW-flat index.
// Threads: pure functions, callable from any thread. Included by the other CFaiss files only.
#ifndef LOOKALIKE_DISTANCES_H
#define LOOKALIKE_DISTANCES_H

#include <faiss/Index.h>
#if FAISS_VERSION_MAJOR != 1 || FAISS_VERSION_MINOR != 7
#error "Sources/CFaiss walks FAISS 1.7.x internals (IndexHNSW, HNSW's levels/offsets/neighbors, FlatCodesDistanceComputer); check them against this FAISS before changing this test"
#endif
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/utils/distances.h>

#include <immintrin.h>

#include <cstddef>

namespace lk {

extern const bool kUseAVX2;

// The sum of a vector's eight floats (every AVX2 kernel's last step). Callers are AVX2 code.
__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 shuf = _mm_movehdup_ps(lo);
    __m128 sums = _mm_add_ps(lo, shuf);
    return _mm_cvtss_f32(_mm_add_ss(sums, _mm_movehl_ps(shuf, sums)));
}

float dot_avx2(const float *x, const float *y, size_t d);
float l2_avx2(const float *x, const float *y, size_t d);
// Four dot products (ip) or squared distances of x against y[0..3], sharing the loads of x.
void four_avx2(bool ip, const float *x, const float *const y[4], size_t d, float out[4]);

// The loop every one-row kernel shares (distances.cpp, sq_storage.cpp): two accumulators,
// 16 dimensions a step (two chains of FMAs in flight), one more 8-wide step, the horizontal
// sum, then the scalar tail in order. step(i, acc) is acc plus the 8 terms at i; tail(i, s)
// is s plus the term at i, in one expression (so it contracts to an FMA as the kernels' tails
// always did: results are bit for bit those of the kernels written out). Both are inlined;
// a step that uses intrinsics must be a lambda marked LK_SIMD, the kernels' target.
#define LK_SIMD __attribute__((target("avx2,fma,f16c")))
template <typename Step, typename Tail>
LK_SIMD inline float reduce_rows(size_t d, Step &&step, Tail &&tail) {
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        a = step(i, a);
        b = step(i + 8, b);
    }
    for (; i + 8 <= d; i += 8) a = step(i, a);
    float s = hsum(_mm256_add_ps(a, b));
    for (; i < d; i++) s = tail(i, s);
    return s;
}

inline float dot(const float *x, const float *y, size_t d) {
    return kUseAVX2 ? dot_avx2(x, y, d) : faiss::fvec_inner_product(x, y, d);
}
inline float l2(const float *x, const float *y, size_t d) {
    return kUseAVX2 ? l2_avx2(x, y, d) : faiss::fvec_L2sqr(x, y, d);
}

// HNSW's distance: smaller is closer; -dot for inner product (as FAISS's IndexHNSW), squared L2.
inline float hnsw_distance(bool ip, const float *x, const float *y, size_t d) {
    return ip ? -dot(x, y, d) : l2(x, y, d);
}
inline void hnsw_distance4(bool ip, const float *x, const float *const y[4], size_t d, float out[4]) {
    if (kUseAVX2) {
        four_avx2(ip, x, y, d, out);
        if (ip) for (int j = 0; j < 4; j++) out[j] = -out[j];
    } else {
        for (int j = 0; j < 4; j++) out[j] = hnsw_distance(ip, x, y[j], d);
    }
}

// Prefetches `bytes` bytes from p, one cache line at a time.
inline void prefetch_bytes(const void *p, size_t bytes) {
    const char *c = static_cast<const char *>(p);
    for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, 0, 3);
}

// Distances (hnsw_distance) of x to rows[ids[0..n-1]], four at a time; the next four rows are
// prefetched whole while the current four are scored.
inline void hnsw_distances(bool ip, const float *x, const float *base, size_t d, const int *ids, int n,
                           float *out) {
    int j = 0;
    const size_t row_bytes = d * sizeof(float);
    for (; j + 4 <= n; j += 4) {
        for (int t = j + 4; t < j + 8 && t < n; t++) prefetch_bytes(base + (int64_t)ids[t] * d, row_bytes);
        const float *y[4] = {base + (int64_t)ids[j] * d, base + (int64_t)ids[j + 1] * d,
                             base + (int64_t)ids[j + 2] * d, base + (int64_t)ids[j + 3] * d};
        hnsw_distance4(ip, x, y, d, out + j);
    }
    for (; j < n; j++) out[j] = hnsw_distance(ip, x, base + (int64_t)ids[j] * d, d);
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
        return inner_product ? dot(x, y, d) : l2(x, y, d);
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

// The HNSW index (not behind a pre-transform) whose storage is FastFlat (the only kind a live
// graph may have), or null.
faiss::IndexHNSW *flat_hnsw(faiss::Index *index);
// The HNSW index (not behind a pre-transform) whose storage is FastFlat or FastSQ (the shim's
// search loop applies), or null.
faiss::IndexHNSW *fast_hnsw(faiss::Index *index);

// Gives an HNSW index with plain flat float storage (L2 or IP) the FastFlat storage, and one
// with 8-bit or fp16 scalar-quantizer storage (L2 or IP) FastSQ, moving the codes. Anything
// else is left as it is.
void use_fast_storage(faiss::Index *index);

}  // namespace lk

#endif
