// hnsw_search.cpp: the shim's HNSW search loop, used for every HNSW index on FastFlat storage
// (every HNSW with plain flat float storage) or FastSQ storage (8-bit and fp16 codes, scored
// asymmetrically: sq_storage.h), and always for a live graph (hnsw_graph.h).
//
// FAISS 1.7.3's search loop computes one distance at a time, allocates and zeroes a visited
// table of ntotal bytes per call (one call per query in the engine), and keeps candidates in a
// linear-scan heap. This loop walks the same graph the standard way (greedy descent on the
// upper levels, then a beam of efSearch on level 0), with a per-thread visited table reset by a
// stamp, four distances at a time sharing the query loads, and the next vectors prefetched.
// With a selector bitmap (tombstones, filters) it keeps FAISS's semantics: the walk ignores
// the bitmap (so a sparse filter does not strand it), and the k results are the nearest
// members among every node whose distance it computed.
// Invariants: reads the published count once (graph_view) and never touches or returns a
// position >= it; reads every link with link_load. Buffers are sized to the graph's real
// max degree, so no list is ever cut.
// Threads: any number of searches at once, also while one lk_hnsw_insert runs on a live graph.
#include "hnsw_graph.h"

#include <immintrin.h>

#include <algorithm>
#include <limits>
#include <queue>

namespace lk {

int max_degree(const faiss::HNSW &hnsw) {
    int m = 0;
    for (size_t l = 0; l + 1 < hnsw.cum_nneighbor_per_level.size(); l++)
        m = std::max(m, hnsw.cum_nneighbor_per_level[l + 1] - hnsw.cum_nneighbor_per_level[l]);
    return m;
}

GraphView graph_view(const faiss::IndexHNSW &index, const LiveGraph *live) {
    const faiss::HNSW &h = index.hnsw;
    // FastFlat and FastSQ both keep their codes in IndexFlatCodes::codes.
    const auto *flat = static_cast<const faiss::IndexFlatCodes *>(index.storage);
    GraphView v;
    v.neighbors = h.neighbors.data();
    v.offsets = h.offsets.data();
    v.cum = h.cum_nneighbor_per_level.data();
    v.codes = flat->codes.data();
    v.base = reinterpret_cast<const float *>(v.codes);
    v.space = code_space(index);
    v.d = (size_t)flat->d;
    v.ip = flat->metric_type == faiss::METRIC_INNER_PRODUCT;
    v.max_degree = max_degree(h);
    if (live != nullptr) {
        // Entry before count: see the memory-ordering argument in hnsw_graph.h.
        uint64_t e = live->entry.load(std::memory_order_acquire);
        v.count = live->count.load(std::memory_order_acquire);
        v.entry = (int32_t)(uint32_t)e;
        v.max_level = (int32_t)(uint32_t)(e >> 32);
    } else {
        v.count = std::min<int64_t>(flat->ntotal, (int64_t)h.levels.size());
        v.entry = h.entry_point;
        v.max_level = h.max_level;
    }
    if (v.entry < 0 || v.entry >= v.count) v.entry = -1;
    return v;
}

uint16_t *visited_table(size_t n, uint16_t &stamp) {
    thread_local std::vector<uint16_t> table;
    thread_local uint16_t current = 0;
    if (table.size() < n) table.assign(n, 0), current = 0;
    if (++current == 0) std::fill(table.begin(), table.end(), 0), current = 1;
    stamp = current;
    return table.data();
}

namespace {

struct Searcher {
    const GraphView &g;

    // members: a bitmap over positions (bit i of byte i/8), or null for every position.
    void search(const float *x, int64_t k, int ef, const uint8_t *members, size_t member_bytes,
                float *out_d, int64_t *out_i) const {
        auto is_member = [&](int v) {
            return members == nullptr || ((size_t)(v >> 3) < member_bytes && ((members[v >> 3] >> (v & 7)) & 1));
        };
        for (int64_t j = 0; j < k; j++) out_d[j] = std::numeric_limits<float>::max(), out_i[j] = -1;
        if (g.entry < 0) return;
        thread_local std::vector<int> id_buffer;
        thread_local std::vector<float> d_buffer;
        if ((int)id_buffer.size() < g.max_degree) id_buffer.resize(g.max_degree), d_buffer.resize(g.max_degree);
        int *ids = id_buffer.data();
        float *ds = d_buffer.data();
        const int32_t count = (int32_t)g.count;

        QueryCodes query(g.space, x);
        auto dists = [&](const float *, const int *id, int m, float *out) { query.hnsw_many(g.codes, id, m, out); };
        int ep = g.entry;
        float d_ep = query.hnsw(g.code(ep));
        for (int level = g.max_level; level >= 1; level--) {
            for (bool moved = true; moved;) {
                moved = false;
                size_t b, e;
                g.range(ep, level, b, e);
                int n = gather_links(g.neighbors, b, e, ids, [&](int32_t v) { return v < count; });
                dists(x, ids, n, ds);
                for (int i = 0; i < n; i++)
                    if (ds[i] < d_ep) d_ep = ds[i], ep = ids[i], moved = true;
            }
        }
        ef = std::max<int>(ef, (int)k);
        uint16_t stamp;
        uint16_t *seen = visited_table((size_t)count, stamp);
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
            if (!candidates.empty()) {  // the list expanded next, fetched while this one is scored
                size_t nb, ne;
                g.range(candidates.top().second, 0, nb, ne);
                prefetch_bytes(g.neighbors + nb, (ne - nb) * sizeof(int32_t));
            }
            size_t b, e;
            g.range(c.second, 0, b, e);
            int n = gather_unvisited(g.neighbors, b, e, count, seen, stamp, g.codes, g.space.code_size, ids);
            dists(x, ids, n, ds);
            for (int i = 0; i < n; i++) {
                keep(ds[i], ids[i]);
                if ((int)results.size() < ef || ds[i] < results.top().first) {
                    candidates.emplace(ds[i], ids[i]);
                    results.emplace(ds[i], ids[i]);
                    __builtin_prefetch(g.offsets + ids[i], 0, 3);
                    if ((int)results.size() > ef) results.pop();
                }
            }
        }
        std::priority_queue<Node> &best = members != nullptr ? kept : results;
        while ((int64_t)best.size() > k) best.pop();
        for (int64_t j = (int64_t)best.size() - 1; j >= 0; j--) {
            out_d[j] = g.ip ? -best.top().first : best.top().first;
            out_i[j] = best.top().second;
            best.pop();
        }
    }
};

}  // namespace

void fast_hnsw_search(const faiss::IndexHNSW &index, const LiveGraph *live, int64_t n, const float *x,
                      int64_t k, int ef, const uint8_t *members, size_t member_bytes, float *distances,
                      int64_t *labels) {
    GraphView g = graph_view(index, live);  // one snapshot for every query of this call
    Searcher s{g};
    // One query after another on the calling thread: this module is compiled without -fopenmp
    // (a pragma here was a no-op), and the engine searches one query per call from many threads.
    for (int64_t q = 0; q < n; q++)
        s.search(x + q * g.d, k, ef, members, member_bytes, distances + q * k, labels + q * k);
}

}  // namespace lk
