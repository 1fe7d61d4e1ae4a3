// sq_storage.cpp: the compressed-code kernels and FastSQ declared in sq_storage.h.
// Functions compiled with LK_SIMD (distances.h: target("avx2,fma,f16c")) run only when
// kUseAVX2 says the CPU has AVX2 and FMA (every such x86 CPU also has F16C); the one-row
// kernels are reduce_rows (distances.h) with their own terms. Debian's FAISS scores SQ codes
// with scalar code only.
// Threads: as sq_storage.h says: pure kernels; a FastSQ is read-only after train/add.
#include "sq_storage.h"

#include <immintrin.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <typeinfo>

namespace lk {

// MARK: scalar references

float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        float f = (float)mant * (1.0f / 16777216.0f);  // subnormal (or zero): mant * 2^-24
        return sign ? -f : f;
    }
    if (exp == 31) bits = sign | 0x7f800000u | (mant << 13);  // inf, nan
    else bits = sign | ((exp + 112) << 23) | (mant << 13);
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

float sq8_ip_ref(const float *w, const uint8_t *c, size_t d) {
    float s = 0;
    for (size_t i = 0; i < d; i++) s += w[i] * (float)c[i];
    return s;
}
float sq8_l2_ref(const float *r, const float *b, const uint8_t *c, size_t d) {
    float s = 0;
    for (size_t i = 0; i < d; i++) {
        float t = r[i] - b[i] * (float)c[i];
        s += t * t;
    }
    return s;
}
float fp16_ip_ref(const float *q, const uint16_t *c, size_t d) {
    float s = 0;
    for (size_t i = 0; i < d; i++) s += q[i] * half_to_float(c[i]);
    return s;
}
float fp16_l2_ref(const float *q, const uint16_t *c, size_t d) {
    float s = 0;
    for (size_t i = 0; i < d; i++) {
        float t = q[i] - half_to_float(c[i]);
        s += t * t;
    }
    return s;
}

// MARK: AVX2 kernels

namespace {
LK_SIMD inline __m256 load_u8(const uint8_t *c) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(c))));
}
LK_SIMD inline __m256 load_f16(const uint16_t *c) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(c)));
}
}  // namespace

LK_SIMD float sq8_ip_avx2(const float *w, const uint8_t *c, size_t d) {
    return reduce_rows(
        d, [&](size_t i, __m256 acc) LK_SIMD { return _mm256_fmadd_ps(_mm256_loadu_ps(w + i), load_u8(c + i), acc); },
        [&](size_t i, float s) { return s + w[i] * (float)c[i]; });
}

LK_SIMD float sq8_l2_avx2(const float *r, const float *bs, const uint8_t *c, size_t d) {
    return reduce_rows(
        d,
        [&](size_t i, __m256 acc) LK_SIMD {
            __m256 t = _mm256_fnmadd_ps(_mm256_loadu_ps(bs + i), load_u8(c + i), _mm256_loadu_ps(r + i));
            return _mm256_fmadd_ps(t, t, acc);
        },
        [&](size_t i, float s) {
            float t = r[i] - bs[i] * (float)c[i];
            return s + t * t;
        });
}

LK_SIMD void sq8_four_avx2(bool ip, const float *w, const float *bs, const uint8_t *const c[4], size_t d,
                           float out[4]) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    size_t i = 0;
    for (; i + 8 <= d; i += 8) {
        __m256 wv = _mm256_loadu_ps(w + i);
        if (ip) {
            for (int j = 0; j < 4; j++) acc[j] = _mm256_fmadd_ps(wv, load_u8(c[j] + i), acc[j]);
        } else {
            __m256 bv = _mm256_loadu_ps(bs + i);
            for (int j = 0; j < 4; j++) {
                __m256 t = _mm256_fnmadd_ps(bv, load_u8(c[j] + i), wv);
                acc[j] = _mm256_fmadd_ps(t, t, acc[j]);
            }
        }
    }
    for (int j = 0; j < 4; j++) out[j] = hsum(acc[j]);
    for (; i < d; i++)
        for (int j = 0; j < 4; j++) {
            if (ip) {
                out[j] += w[i] * (float)c[j][i];
            } else {
                float t = w[i] - bs[i] * (float)c[j][i];
                out[j] += t * t;
            }
        }
}

LK_SIMD float fp16_ip_avx2(const float *q, const uint16_t *c, size_t d) {
    return reduce_rows(
        d, [&](size_t i, __m256 acc) LK_SIMD { return _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load_f16(c + i), acc); },
        [&](size_t i, float s) { return s + q[i] * half_to_float(c[i]); });
}

LK_SIMD float fp16_l2_avx2(const float *q, const uint16_t *c, size_t d) {
    return reduce_rows(
        d,
        [&](size_t i, __m256 acc) LK_SIMD {
            __m256 t = _mm256_sub_ps(_mm256_loadu_ps(q + i), load_f16(c + i));
            return _mm256_fmadd_ps(t, t, acc);
        },
        [&](size_t i, float s) {
            float t = q[i] - half_to_float(c[i]);
            return s + t * t;
        });
}

LK_SIMD void fp16_four_avx2(bool ip, const float *q, const uint16_t *const c[4], size_t d, float out[4]) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    size_t i = 0;
    for (; i + 8 <= d; i += 8) {
        __m256 qv = _mm256_loadu_ps(q + i);
        for (int j = 0; j < 4; j++) {
            __m256 x = load_f16(c[j] + i);
            if (ip) {
                acc[j] = _mm256_fmadd_ps(qv, x, acc[j]);
            } else {
                __m256 t = _mm256_sub_ps(qv, x);
                acc[j] = _mm256_fmadd_ps(t, t, acc[j]);
            }
        }
    }
    for (int j = 0; j < 4; j++) out[j] = hsum(acc[j]);
    for (; i < d; i++)
        for (int j = 0; j < 4; j++) {
            float x = half_to_float(c[j][i]);
            out[j] += ip ? q[i] * x : (q[i] - x) * (q[i] - x);
        }
}

// MARK: QueryCodes

QueryCodes::QueryCodes(const CodeSpace &space, const float *query, bool use_reference)
        : s(space), q(query), reference(use_reference) {
    if (query != nullptr) prepare(query);
}

void QueryCodes::decode(const CodeSpace &space, const uint8_t *code, float *out) {
    if (space.codec == Codec::sq8) {
        for (size_t i = 0; i < space.d; i++) out[i] = space.a[i] + space.b[i] * (float)code[i];
    } else if (space.codec == Codec::fp16) {
        const uint16_t *h = reinterpret_cast<const uint16_t *>(code);
        for (size_t i = 0; i < space.d; i++) out[i] = half_to_float(h[i]);
    } else {
        std::memcpy(out, code, space.d * sizeof(float));
    }
}

void QueryCodes::prepare(const float *query) {
    q = query;
    bias = 0;
    if (s.codec != Codec::sq8) return;
    w.resize(s.d);
    if (s.ip) {
        for (size_t i = 0; i < s.d; i++) w[i] = q[i] * s.b[i], bias += q[i] * s.a[i];
    } else {
        for (size_t i = 0; i < s.d; i++) w[i] = q[i] - s.a[i];
    }
}

float QueryCodes::faiss(const uint8_t *code) const {
    const size_t d = s.d;
    switch (s.codec) {
    case Codec::f32: {
        const float *y = reinterpret_cast<const float *>(code);
        if (reference) return s.ip ? faiss::fvec_inner_product(q, y, d) : faiss::fvec_L2sqr(q, y, d);
        return s.ip ? dot(q, y, d) : l2(q, y, d);
    }
    case Codec::sq8:
        if (s.ip) return bias + (reference ? sq8_ip_ref(w.data(), code, d) : sq8_ip_avx2(w.data(), code, d));
        return reference ? sq8_l2_ref(w.data(), s.b, code, d) : sq8_l2_avx2(w.data(), s.b, code, d);
    case Codec::fp16: {
        const uint16_t *c = reinterpret_cast<const uint16_t *>(code);
        if (s.ip) return reference ? fp16_ip_ref(q, c, d) : fp16_ip_avx2(q, c, d);
        return reference ? fp16_l2_ref(q, c, d) : fp16_l2_avx2(q, c, d);
    }
    }
    return 0;
}

void QueryCodes::hnsw_many(const uint8_t *base, const int *ids, int n, float *out) const {
    if (s.codec == Codec::f32 && !reference) {
        hnsw_distances(s.ip, q, reinterpret_cast<const float *>(base), s.d, ids, n, out);
        return;
    }
    const size_t cs = s.code_size;
    int j = 0;
    if (!reference) {
        for (; j + 4 <= n; j += 4) {
            for (int t = j + 4; t < j + 8 && t < n; t++) prefetch_bytes(base + (int64_t)ids[t] * cs, cs);
            const uint8_t *c[4] = {base + (int64_t)ids[j] * cs, base + (int64_t)ids[j + 1] * cs,
                                   base + (int64_t)ids[j + 2] * cs, base + (int64_t)ids[j + 3] * cs};
            if (s.codec == Codec::sq8) {
                sq8_four_avx2(s.ip, w.data(), s.b, c, s.d, out + j);
                if (s.ip) for (int t = 0; t < 4; t++) out[j + t] += bias;
            } else {
                const uint16_t *h[4] = {reinterpret_cast<const uint16_t *>(c[0]), reinterpret_cast<const uint16_t *>(c[1]),
                                        reinterpret_cast<const uint16_t *>(c[2]), reinterpret_cast<const uint16_t *>(c[3])};
                fp16_four_avx2(s.ip, q, h, s.d, out + j);
            }
            if (s.ip) for (int t = 0; t < 4; t++) out[j + t] = -out[j + t];
        }
    }
    for (; j < n; j++) out[j] = hnsw(base + (int64_t)ids[j] * cs);
}

// MARK: FastSQ

namespace {

// FAISS's SQDistanceComputer contract (inner product or L2, not negated), with our kernels.
// symmetric_dis (the neighbour heuristic's node-to-node distance) decodes node i once and
// scores node j's code against it; both prepared queries reuse their buffers.
struct FastSQDistance : faiss::FlatCodesDistanceComputer {
    const FastSQ &storage;
    QueryCodes query, other;
    std::vector<float> decoded;

    explicit FastSQDistance(const FastSQ &s)
            : FlatCodesDistanceComputer(s.codes.data(), s.code_size), storage(s), query(s.space, nullptr),
              other(s.space, nullptr), decoded((size_t)s.d) {}

    void set_query(const float *x) override { query.prepare(x); }
    float distance_to_code(const uint8_t *code) override { return query.faiss(code); }
    float symmetric_dis(idx_t i, idx_t j) override {
        QueryCodes::decode(storage.space, codes + i * code_size, decoded.data());
        other.prepare(decoded.data());
        return other.faiss(codes + j * code_size);
    }
};

}  // namespace

Codec sq_codec(const faiss::ScalarQuantizer &sq) {
    switch (sq.qtype) {
    case faiss::ScalarQuantizer::QT_8bit:
    case faiss::ScalarQuantizer::QT_8bit_uniform: return Codec::sq8;
    case faiss::ScalarQuantizer::QT_fp16: return Codec::fp16;
    default: return Codec::f32;
    }
}

CodeSpace sq_code_space(const faiss::ScalarQuantizer &sq, size_t d, bool ip, std::vector<float> &a,
                        std::vector<float> &b) {
    CodeSpace space;
    space.codec = sq_codec(sq);
    space.d = d;
    space.code_size = sq.code_size;
    space.ip = ip;
    const bool uniform = sq.qtype == faiss::ScalarQuantizer::QT_8bit_uniform;
    a.assign(d, 0.0f);
    b.assign(d, 0.0f);
    size_t need = uniform ? 2 : 2 * d;
    if (space.codec == Codec::sq8 && sq.trained.size() >= need) {
        for (size_t i = 0; i < d; i++) {
            float vmin = uniform ? sq.trained[0] : sq.trained[i];
            float vdiff = uniform ? sq.trained[1] : sq.trained[d + i];
            b[i] = vdiff / 255.0f;
            a[i] = vmin + 0.5f * b[i];
        }
    }
    space.a = a.data();
    space.b = b.data();
    return space;
}

bool FastSQ::supports(const faiss::IndexScalarQuantizer &sq) {
    bool metric = sq.metric_type == faiss::METRIC_L2 || sq.metric_type == faiss::METRIC_INNER_PRODUCT;
    return sq_codec(sq.sq) != Codec::f32 && metric;
}

FastSQ::FastSQ(const faiss::IndexScalarQuantizer &src) : IndexScalarQuantizer(src) { refresh(); }

void FastSQ::refresh() { space = sq_code_space(sq, (size_t)d, metric_type == faiss::METRIC_INNER_PRODUCT, a, b); }

void FastSQ::train(idx_t n, const float *x) {
    IndexScalarQuantizer::train(n, x);
    refresh();
}

faiss::FlatCodesDistanceComputer *FastSQ::get_FlatCodesDistanceComputer() const {
    return new FastSQDistance(*this);
}

FastSQ *fast_sq(const faiss::Index *storage) {
    if (storage == nullptr || typeid(*storage) != typeid(FastSQ)) return nullptr;
    return const_cast<FastSQ *>(static_cast<const FastSQ *>(storage));
}

CodeSpace code_space(const faiss::IndexHNSW &index) {
    if (FastSQ *sq = fast_sq(index.storage)) return sq->space;
    CodeSpace s;
    s.codec = Codec::f32;
    s.d = (size_t)index.storage->d;
    s.code_size = s.d * sizeof(float);
    s.ip = index.storage->metric_type == faiss::METRIC_INNER_PRODUCT;
    return s;
}

}  // namespace lk
