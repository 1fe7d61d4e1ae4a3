// ivf_scan.cpp: the shim's IVF search (ivf_scan.h): coarse quantizer, list scanner, the split
// of a batch over threads, and the check that this FAISS behaves as the scanner (and the IVF-PQ
// path of ivfpq_search.cpp, which shares the coarse step) assumes.
//
// FAISS 1.7.3 semantics copied here (IndexIVF::search_preassigned, IVFFlatScanner,
// IVFSQScannerL2/IP): lists are probed in the quantizer's order; a list's codes are scored in
// order, members only, and enter a k-heap (CMax for L2, CMin for inner product) when they beat
// its top; heap_reorder sorts the result and pads it with -1. IVF-Flat scores the stored vector.
// IVF-SQ with by_residual stores the code of x - c: for L2 the query becomes q - c per list
// (FAISS's compute_residual), for inner product the quantizer's score <q, c> is added.
#include "ivf_scan.h"

#include "distances.h"
#include "ivfpq_search.h"
#include "sq_storage.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/invlists/OnDiskInvertedLists.h>
#include <faiss/utils/Heap.h>
#include <faiss/utils/distances.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <typeinfo>
#include <vector>

namespace lk {

namespace {

using HeapL2 = faiss::CMax<float, int64_t>;  // top = farthest kept
using HeapIP = faiss::CMin<float, int64_t>;  // top = lowest score kept

// The flat quantizer whose centroids the coarse step reads, or null (FAISS's search then).
const faiss::IndexFlat *flat_quantizer(const faiss::Index *q) {
    if (q == nullptr) return nullptr;
    const std::type_info &t = typeid(*q);
    if (t != typeid(faiss::IndexFlat) && t != typeid(faiss::IndexFlatL2) && t != typeid(faiss::IndexFlatIP))
        return nullptr;
    if (q->metric_type != faiss::METRIC_L2 && q->metric_type != faiss::METRIC_INNER_PRODUCT) return nullptr;
    return static_cast<const faiss::IndexFlat *>(q);
}

// ivf_fast_kind without the process-wide check (the self-test calls it).
IvfKind kind_of(const faiss::IndexIVF &ivf) {
    if (ivf.metric_type != faiss::METRIC_L2 && ivf.metric_type != faiss::METRIC_INNER_PRODUCT) return IvfKind::none;
    if (ivf.max_codes != 0 || !ivf.is_trained || ivf.invlists == nullptr || ivf.quantizer == nullptr) return IvfKind::none;
    if (ivf.quantizer->ntotal != (int64_t)ivf.nlist) return IvfKind::none;
    const std::type_info &lists = typeid(*ivf.invlists);
    if (lists != typeid(faiss::ArrayInvertedLists) && lists != typeid(faiss::OnDiskInvertedLists)) return IvfKind::none;
    const std::type_info &t = typeid(ivf);
    if (t == typeid(faiss::IndexIVFFlat))
        return ivf.code_size == (size_t)ivf.d * sizeof(float) ? IvfKind::flat : IvfKind::none;
    if (t == typeid(faiss::IndexIVFPQ)) {
        // Only the coarse step is ours: worth it, and checked, for a flat quantizer, residual
        // codes (factory's default), tables of kind 0/1 (2 needs a MultiIndexQuantizer), and
        // FAISS's one-thread-per-query mode (the batch split here is then the same).
        const auto &pq = static_cast<const faiss::IndexIVFPQ &>(ivf);
        bool ok = flat_quantizer(ivf.quantizer) != nullptr && pq.by_residual && pq.use_precomputed_table <= 1 &&
                  pq.parallel_mode == 0 && pq.code_size == pq.pq.code_size;
        return ok ? IvfKind::pq : IvfKind::none;
    }
    if (t != typeid(faiss::IndexIVFScalarQuantizer)) return IvfKind::none;
    const auto &sq = static_cast<const faiss::IndexIVFScalarQuantizer &>(ivf).sq;
    if (sq.code_size != ivf.code_size) return IvfKind::none;
    switch (sq_codec(sq)) {
    case Codec::sq8: return IvfKind::sq8;
    case Codec::fp16: return IvfKind::fp16;
    default: return IvfKind::none;
    }
}

template <class C>
inline void heap_offer(int64_t k, float *simi, int64_t *idxi, float dis, int64_t id) {
    if (C::cmp(simi[0], dis)) faiss::heap_replace_top<C>((size_t)k, simi, idxi, dis, id);
}

// The nprobe lists nearest to x among the flat quantizer's centroids (FAISS's knn order),
// distances by the AVX2 kernels, four centroids at a time.
template <class C>
void coarse_one(const faiss::IndexFlat &q, const float *x, size_t nprobe, float *dis, int64_t *keys) {
    const size_t d = (size_t)q.d, nlist = (size_t)q.ntotal;
    const bool ip = q.metric_type == faiss::METRIC_INNER_PRODUCT;
    const float *xb = reinterpret_cast<const float *>(q.codes.data());
    faiss::heap_heapify<C>(nprobe, dis, keys);
    size_t j = 0;
    float four[4];
    for (; j + 4 <= nlist; j += 4) {
        const float *y[4] = {xb + j * d, xb + (j + 1) * d, xb + (j + 2) * d, xb + (j + 3) * d};
        four_avx2(ip, x, y, d, four);
        for (int t = 0; t < 4; t++) heap_offer<C>((int64_t)nprobe, dis, keys, four[t], (int64_t)(j + t));
    }
    for (; j < nlist; j++)
        heap_offer<C>((int64_t)nprobe, dis, keys, ip ? dot_avx2(x, xb + j * d, d) : l2_avx2(x, xb + j * d, d), (int64_t)j);
    faiss::heap_reorder<C>(nprobe, dis, keys);
}

struct Scanner {
    const faiss::IndexIVF &ivf;
    IvfKind kind;
    const uint8_t *bitmap;
    size_t bitmap_bytes;
    size_t nprobe;
    bool ip, by_residual;
    std::vector<float> a, b;            // sq8 tables (CodeSpace points here)
    CodeSpace space;

    Scanner(const faiss::IndexIVF &index, IvfKind k, size_t probes, const uint8_t *bits, size_t bytes)
            : ivf(index), kind(k), bitmap(bits), bitmap_bytes(bytes), nprobe(probes),
              ip(index.metric_type == faiss::METRIC_INNER_PRODUCT), by_residual(false) {
        if (kind == IvfKind::flat) {
            space.codec = Codec::f32;
            space.d = (size_t)index.d;
            space.code_size = index.code_size;
            space.ip = ip;
        } else {
            const auto &sq = static_cast<const faiss::IndexIVFScalarQuantizer &>(index);
            by_residual = sq.by_residual;
            space = sq_code_space(sq.sq, (size_t)index.d, ip, a, b);
        }
    }

    bool member(int64_t id) const {
        return bitmap == nullptr || ((size_t)(id >> 3) < bitmap_bytes && ((bitmap[id >> 3] >> (id & 7)) & 1));
    }

    // Scores four codes (FAISS's convention: inner product or squared L2) before `accu0`.
    void four(const QueryCodes &qc, const uint8_t *const c[4], float out[4]) const {
        const size_t d = space.d;
        switch (space.codec) {
        case Codec::f32: {
            const float *y[4] = {reinterpret_cast<const float *>(c[0]), reinterpret_cast<const float *>(c[1]),
                                 reinterpret_cast<const float *>(c[2]), reinterpret_cast<const float *>(c[3])};
            four_avx2(ip, qc.q, y, d, out);
            return;
        }
        case Codec::sq8:
            sq8_four_avx2(ip, qc.w.data(), space.b, c, d, out);
            if (ip) for (int t = 0; t < 4; t++) out[t] += qc.bias;
            return;
        case Codec::fp16: {
            const uint16_t *h[4] = {reinterpret_cast<const uint16_t *>(c[0]), reinterpret_cast<const uint16_t *>(c[1]),
                                    reinterpret_cast<const uint16_t *>(c[2]), reinterpret_cast<const uint16_t *>(c[3])};
            fp16_four_avx2(ip, qc.q, h, d, out);
            return;
        }
        }
    }

    template <class C>
    void scan_list(const QueryCodes &qc, float accu0, const uint8_t *codes, const faiss::Index::idx_t *ids,
                   size_t size, int64_t k, float *simi, int64_t *idxi) const {
        const size_t cs = space.code_size;
        size_t pending[4];
        int n = 0;
        auto flush4 = [&] {
            const uint8_t *c[4] = {codes + pending[0] * cs, codes + pending[1] * cs, codes + pending[2] * cs,
                                   codes + pending[3] * cs};
            float out[4];
            four(qc, c, out);
            for (int t = 0; t < 4; t++) heap_offer<C>(k, simi, idxi, accu0 + out[t], ids[pending[t]]);
        };
        for (size_t j = 0; j < size; j++) {
            if (bitmap != nullptr && !member(ids[j])) continue;
            pending[n++] = j;
            if (n == 4) flush4(), n = 0;
        }
        for (int t = 0; t < n; t++) heap_offer<C>(k, simi, idxi, accu0 + qc.faiss(codes + pending[t] * cs), ids[pending[t]]);
    }

    template <class C>
    void query(const float *x, const float *coarse_dis, const int64_t *keys, int64_t k, float *simi,
               int64_t *idxi, std::vector<float> &residual) const {
        faiss::heap_heapify<C>((size_t)k, simi, idxi);
        QueryCodes qc(space, x, false);
        const bool l2_residual = by_residual && !ip;
        for (size_t p = 0; p < nprobe; p++) {
            int64_t key = keys[p];
            if (key < 0 || key >= (int64_t)ivf.nlist) continue;  // fewer centroids than nprobe
            size_t size = ivf.invlists->list_size((size_t)key);
            if (size == 0) continue;
            float accu0 = by_residual && ip ? coarse_dis[p] : 0.0f;
            if (l2_residual) {
                ivf.quantizer->compute_residual(x, residual.data(), key);
                qc.prepare(residual.data());
            }
            faiss::InvertedLists::ScopedCodes codes(ivf.invlists, (size_t)key);
            faiss::InvertedLists::ScopedIds ids(ivf.invlists, (size_t)key);
            scan_list<C>(qc, accu0, codes.get(), ids.get(), size, k, simi, idxi);
        }
        faiss::heap_reorder<C>((size_t)k, simi, idxi);
    }

    // Queries [q0, q1) of the batch; coarse results precomputed when `pre_keys` is set.
    void run(int64_t q0, int64_t q1, const float *x, int64_t k, const float *pre_dis, const int64_t *pre_keys,
             float *distances, int64_t *labels) const {
        std::vector<float> dis(nprobe), residual((size_t)ivf.d);
        std::vector<int64_t> keys(nprobe);
        for (int64_t q = q0; q < q1; q++) {
            const float *xq = x + q * ivf.d;
            const float *cd = pre_dis ? pre_dis + q * nprobe : dis.data();
            const int64_t *ck = pre_keys ? pre_keys + q * nprobe : keys.data();
            if (pre_keys == nullptr) ivf_coarse(ivf, 1, xq, nprobe, dis.data(), keys.data());
            if (ip) query<HeapIP>(xq, cd, ck, k, distances + q * k, labels + q * k, residual);
            else query<HeapL2>(xq, cd, ck, k, distances + q * k, labels + q * k, residual);
        }
    }
};

void search(const faiss::IndexIVF &ivf, IvfKind kind, int64_t n, const float *x, int64_t k, size_t nprobe,
            const uint8_t *bitmap, size_t bitmap_bytes, int threads, float *distances, int64_t *labels) {
    nprobe = std::min(nprobe, ivf.nlist);
    if (nprobe == 0) throw std::invalid_argument("nprobe must be positive");
    Scanner s(ivf, kind, nprobe, bitmap, bitmap_bytes);
    // A batch large enough for FAISS's BLAS path gets its coarse step from FAISS, in one call.
    std::vector<float> pre_dis;
    std::vector<int64_t> pre_keys;
    if (n >= faiss::distance_compute_blas_threshold) {
        pre_dis.resize((size_t)n * nprobe);
        pre_keys.resize((size_t)n * nprobe);
        ivf_coarse(ivf, n, x, nprobe, pre_dis.data(), pre_keys.data());
    }
    const float *pd = pre_keys.empty() ? nullptr : pre_dis.data();
    const int64_t *pk = pre_keys.empty() ? nullptr : pre_keys.data();
    ivf_split(n, threads, [&](int64_t q0, int64_t q1) { s.run(q0, q1, x, k, pd, pk, distances, labels); });
}

// MARK: the check that this FAISS is the one the scanner copies

// A small index of each kind and metric (13 dimensions: every kernel tail), searched by FAISS
// and by the shim with and without a selector; any difference beyond float rounding turns the
// fast path off for the process. IVF-PQ (13 one-dimension codebooks of 16 centroids: 640
// points keep FAISS's k-means from warning) also without its L2 precomputed table.
bool self_test() {
    const int d = 13, nb = 640, nlist = 4, k = 7;
    std::vector<float> xb((size_t)nb * d), centroids((size_t)nlist * d);
    uint32_t state = 12345;
    auto next = [&] { return (state = state * 1664525u + 1013904223u) / 4294967296.0f - 0.5f; };
    for (auto &v : centroids) v = 2 * next();
    for (int i = 0; i < nb; i++)
        for (int j = 0; j < d; j++) xb[(size_t)i * d + j] = centroids[(size_t)(i % nlist) * d + j] + 0.3f * next();
    std::vector<uint8_t> bitmap((nb + 7) / 8);
    for (int i = 0; i < nb; i += 3) bitmap[i >> 3] |= (uint8_t)(1u << (i & 7));
    for (faiss::MetricType metric : {faiss::METRIC_L2, faiss::METRIC_INNER_PRODUCT}) {
        for (int type = 0; type < 5; type++) {
            faiss::IndexFlat quantizer(d, metric);
            quantizer.add(nlist, centroids.data());
            std::unique_ptr<faiss::IndexIVF> ivf;
            if (type == 0) ivf.reset(new faiss::IndexIVFFlat(&quantizer, d, nlist, metric));
            else if (type <= 2)
                ivf.reset(new faiss::IndexIVFScalarQuantizer(
                        &quantizer, d, nlist, type == 1 ? faiss::ScalarQuantizer::QT_8bit : faiss::ScalarQuantizer::QT_fp16,
                        metric));
            else ivf.reset(new faiss::IndexIVFPQ(&quantizer, d, nlist, d, 4, metric));
            ivf->train(nb, xb.data());  // the quantizer is complete: trains the SQ ranges or PQ only
            ivf->add(nb, xb.data());
            if (type == 4) {  // PQ with no precomputed table: L2 scores the residual (IP has none)
                auto *pq = static_cast<faiss::IndexIVFPQ *>(ivf.get());
                pq->use_precomputed_table = -1;
                pq->precompute_table();
            }
            IvfKind kind = kind_of(*ivf);
            if (kind == IvfKind::none) return false;
            for (bool filtered : {false, true}) {
                faiss::IDSelectorBitmap sel(bitmap.size(), bitmap.data());
                faiss::SearchParametersIVF params;
                params.nprobe = 2;
                params.sel = filtered ? &sel : nullptr;
                const int nq = 5;
                std::vector<float> fd(nq * k), sd(nq * k);
                std::vector<int64_t> fl(nq * k), sl(nq * k);
                ivf->search(nq, xb.data() + 17 * d, k, fd.data(), fl.data(), &params);
                if (kind == IvfKind::pq) ivfpq_search(*ivf, nq, xb.data() + 17 * d, k, params, 1, sd.data(), sl.data());
                else
                    search(*ivf, kind, nq, xb.data() + 17 * d, k, 2, filtered ? bitmap.data() : nullptr, bitmap.size(), 1,
                           sd.data(), sl.data());
                for (int i = 0; i < nq * k; i++)
                    if (fl[i] != sl[i] || std::fabs(fd[i] - sd[i]) > 1e-3f * std::max(1.0f, std::fabs(fd[i]))) return false;
            }
        }
    }
    return true;
}

bool fast_path_available() {
    static const bool ok = [] {
        if (!kUseAVX2) return false;
        // ivf_scan copies 1.7.3's scanners; distances.h already refuses any FAISS but 1.7.x.
        if (FAISS_VERSION_MAJOR != 1 || FAISS_VERSION_MINOR != 7 || FAISS_VERSION_PATCH != 3) return false;
        bool passed = false;
        try {
            passed = self_test();
        } catch (const std::exception &) {
            passed = false;
        }
        if (!passed)
            std::fprintf(stderr, "lookalike: this FAISS's IVF search differs from 1.7.3's; IVF indexes use FAISS's own search\n");
        return passed;
    }();
    return ok;
}

}  // namespace

IvfKind ivf_fast_kind(const faiss::IndexIVF &ivf) {
    IvfKind kind = kind_of(ivf);
    return kind != IvfKind::none && fast_path_available() ? kind : IvfKind::none;
}

void ivf_fast_search(const faiss::IndexIVF &ivf, int64_t n, const float *x, int64_t k, size_t nprobe,
                     const uint8_t *bitmap, size_t bitmap_bytes, int threads, float *distances, int64_t *labels) {
    IvfKind kind = ivf_fast_kind(ivf);
    if (kind == IvfKind::none || kind == IvfKind::pq)
        throw std::logic_error("ivf_fast_search on an index its scanner declines");
    search(ivf, kind, n, x, k, nprobe, bitmap, bitmap_bytes, threads, distances, labels);
}

void ivf_coarse(const faiss::IndexIVF &ivf, int64_t n, const float *x, size_t nprobe, float *dis, int64_t *keys) {
    const faiss::IndexFlat *q = flat_quantizer(ivf.quantizer);
    if (q == nullptr || n >= faiss::distance_compute_blas_threshold) {
        ivf.quantizer->search(n, x, (int64_t)nprobe, dis, keys);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * ivf.d;
        if (q->metric_type == faiss::METRIC_INNER_PRODUCT) coarse_one<HeapIP>(*q, xi, nprobe, dis + i * nprobe, keys + i * nprobe);
        else coarse_one<HeapL2>(*q, xi, nprobe, dis + i * nprobe, keys + i * nprobe);
    }
}

void ivf_split(int64_t n, int threads, const std::function<void(int64_t, int64_t)> &slice) {
    const int team = (int)std::min<int64_t>(n, std::max(1, threads));
    if (team <= 1) return slice(0, n);
    std::exception_ptr failure;
    std::mutex failure_mutex;
    auto work = [&](int t) {
        try {
            slice(n * t / team, n * (t + 1) / team);
        } catch (...) {
            std::lock_guard<std::mutex> guard(failure_mutex);
            if (!failure) failure = std::current_exception();
        }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < team; t++) pool.emplace_back(work, t);
    work(0);
    for (auto &t : pool) t.join();
    if (failure) std::rethrow_exception(failure);
}

}  // namespace lk
