// sq_storage.h: compressed HNSW storage in the shim's fast loop: 8-bit (FAISS's QT_8bit and
// QT_8bit_uniform, a min and a range per dimension) and 16-bit (QT_fp16) scalar-quantizer codes,
// their AVX2 asymmetric kernels (a float query against codes), and FastSQ, the
// IndexScalarQuantizer subclass an HNSW index with such storage gets (use_fast_storage).
//
// Owns: the code kernels (AVX2/FMA/F16C, and scalar references used without AVX2 and by the
// tests), CodeSpace (what a search needs to score codes) and FastSQ.
// Invariants:
//   - FAISS 1.7.3 decodes an 8-bit component as vmin_i + (c_i + 0.5) / 255 * vdiff_i
//     (trained = [vmin(d), vdiff(d)], or one vmin and one vdiff for the uniform type). We write
//     that as a_i + c_i * b_i (b = vdiff / 255, a = vmin + b / 2), so that per query
//       ip:  q.x = q.a + sum (q_i b_i) c_i        (one FMA per component)
//       l2:  |q - x|^2 = sum ((q_i - a_i) - b_i c_i)^2
//     with q.a, q*b and q - a computed once per query (QueryCodes). fp16 codes decode exactly.
//     Results equal FAISS's own distance computer's up to float rounding, for any dimension
//     (tails below 8 components are scored by the scalar code).
//   - FastSQ is written and read as a plain IndexScalarQuantizer (FAISS's writer dynamic_casts),
//     so files stay readable by any FAISS; its a/b tables are derived from sq.trained after
//     train and whenever the shim installs it (read, clone, create).
// Threads: kernels are pure; a FastSQ is read-only after train/add like any FAISS index.
#ifndef LOOKALIKE_SQ_STORAGE_H
#define LOOKALIKE_SQ_STORAGE_H

#include "distances.h"

#include <faiss/IndexScalarQuantizer.h>

#include <cstdint>
#include <vector>

namespace lk {

enum class Codec { f32 = 0, sq8 = 1, fp16 = 2 };

// Scalar references (any CPU; the tests compare the AVX2 kernels against these).
float sq8_ip_ref(const float *w, const uint8_t *c, size_t d);                  // sum w_i c_i
float sq8_l2_ref(const float *r, const float *b, const uint8_t *c, size_t d);  // sum (r_i - b_i c_i)^2
float fp16_ip_ref(const float *q, const uint16_t *c, size_t d);
float fp16_l2_ref(const float *q, const uint16_t *c, size_t d);
float half_to_float(uint16_t h);

// AVX2/FMA/F16C versions: the same sums, eight components at a time; four codes at once share
// the loads of the query-side arrays.
float sq8_ip_avx2(const float *w, const uint8_t *c, size_t d);
float sq8_l2_avx2(const float *r, const float *b, const uint8_t *c, size_t d);
void sq8_four_avx2(bool ip, const float *w, const float *b, const uint8_t *const c[4], size_t d, float out[4]);
float fp16_ip_avx2(const float *q, const uint16_t *c, size_t d);
float fp16_l2_avx2(const float *q, const uint16_t *c, size_t d);
void fp16_four_avx2(bool ip, const float *q, const uint16_t *const c[4], size_t d, float out[4]);

// What scoring a code needs: its format, and for 8-bit codes the a/b tables.
struct CodeSpace {
    Codec codec = Codec::f32;
    size_t d = 0;
    size_t code_size = 0;
    bool ip = false;
    const float *a = nullptr;  // sq8: vmin + b / 2 per dimension
    const float *b = nullptr;  // sq8: vdiff / 255 per dimension
};

// One query prepared against a code space; hnsw() gives HNSW's distance (smaller is closer:
// -inner product, or squared L2), faiss() FAISS's distance computer's (inner product or L2).
// `reference` scores with the scalar code (tests; and always without AVX2).
struct QueryCodes {
    const CodeSpace &s;
    const float *q;
    std::vector<float> w;  // sq8: q * b (ip) or q - a (l2)
    float bias = 0;        // sq8 ip: q . a
    bool reference;

    QueryCodes(const CodeSpace &space, const float *query, bool use_reference = !kUseAVX2);
    // Prepares another query, reusing the buffers (the build's distance computer, per node).
    void prepare(const float *query);
    // The vector a code decodes to (FAISS's sa_decode, from the a/b tables).
    static void decode(const CodeSpace &space, const uint8_t *code, float *out);
    float faiss(const uint8_t *code) const;
    float hnsw(const uint8_t *code) const {
        float v = faiss(code);
        return s.ip ? -v : v;
    }
    // HNSW distances of codes[ids[0..n-1]] (base + id * code_size), four at a time, the next
    // four codes prefetched.
    void hnsw_many(const uint8_t *base, const int *ids, int n, float *out) const;
};

// The codec of a scalar quantizer the kernels score (QT_8bit, QT_8bit_uniform, QT_fp16), or f32
// for any other (which they do not score).
Codec sq_codec(const faiss::ScalarQuantizer &sq);
// A code space for sq's codes (d components, `ip` or L2), the sq8 a/b tables filled from
// sq.trained into a and b (which the space points to; zero until sq is trained).
CodeSpace sq_code_space(const faiss::ScalarQuantizer &sq, size_t d, bool ip, std::vector<float> &a,
                        std::vector<float> &b);

// The storage of a compressed HNSW: FAISS's IndexScalarQuantizer with the shim's kernels in
// its distance computer (so FAISS's own add and search use them too).
struct FastSQ : faiss::IndexScalarQuantizer {
    std::vector<float> a, b;
    CodeSpace space;

    FastSQ() = default;
    // Takes src's settings and trained ranges (not its codes: the caller moves those).
    explicit FastSQ(const faiss::IndexScalarQuantizer &src);
    // Derives a/b from sq.trained (after train, read or clone).
    void refresh();
    void train(idx_t n, const float *x) override;
    faiss::FlatCodesDistanceComputer *get_FlatCodesDistanceComputer() const override;

    static bool supports(const faiss::IndexScalarQuantizer &sq);
};

// The FastSQ storage of an HNSW index (not behind a pre-transform), or null.
FastSQ *fast_sq(const faiss::Index *storage);

// The code space of an HNSW index's fast storage (FastFlat or FastSQ).
CodeSpace code_space(const faiss::IndexHNSW &index);

}  // namespace lk

#endif
