// hnsw_graph.h: the state a mutable (live) HNSW graph shares between its one inserter and its
// concurrent searchers, and the entry points of the shim's own HNSW loops (search, build, link).
//
// Owns: LiveGraph (one per lk_index that lk_hnsw_reserve was called on) and GraphView (one
// search's consistent snapshot of where the graph is).
//
// Memory-ordering argument (why a search may run during lk_hnsw_insert):
//   - lk_hnsw_reserve reserves the storage rows (FastFlat::codes), levels, offsets and neighbors
//     for `capacity` vectors before anybody searches, so later inserts resize these vectors
//     only within their capacity: their data pointers never change and no byte a reader may
//     read is ever freed or moved.
//   - An insert of n vectors at positions c..c+n-1 first writes their rows, levels, offsets
//     and (-1-filled) neighbour slots, then links them. All links are written and read with
//     relaxed 32-bit atomics (link_load/link_store), so a reader sees, in every slot, either
//     -1 or an id some writer stored: a valid id < capacity, never a torn value.
//   - When all n are linked, the inserter stores count = c+n (release), then entry = packed
//     (entry point, max level) (release). A search loads entry (acquire) first, then count
//     (acquire). If it sees the new entry, the count store happened before it, so it sees the
//     new count too: the entry point is always < the count it read. Either pair describes a
//     complete graph over positions < count.
//   - A search never follows, scores or returns an id >= its count (those nodes' rows and
//     offsets may still be being written). Every id < its count had its row, offsets and
//     first links written before the release store of a count <= the one it acquired, so
//     they are visible to it. Later rewrites of those nodes' lists (reverse links, shrinks)
//     only swap one valid id for another or for -1; a reader that meets -1 mid-rewrite stops
//     that list early, which may cost a neighbour for that one visit, never memory safety.
//   - Lists at level l only ever hold nodes whose level is >= l, so neighbor ranges a reader
//     computes are always inside a node's own slots.
// Threads: LiveGraph's fields other than the two atomics belong to the inserter (one
// lk_hnsw_insert at a time per index); the atomics are read by any searcher.
#ifndef LOOKALIKE_HNSW_GRAPH_H
#define LOOKALIKE_HNSW_GRAPH_H

#include "distances.h"
#include "sq_storage.h"

#include <omp.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace lk {

inline int32_t link_load(const int32_t *slot) { return __atomic_load_n(slot, __ATOMIC_RELAXED); }
inline void link_store(int32_t *slot, int32_t v) { __atomic_store_n(slot, v, __ATOMIC_RELAXED); }

// The one way the shim's loops read a neighbour list: the ids of slots [begin, end) up to the
// first -1 (unused slots; a list being rewritten may end early, see above), read with
// link_load, and of those the ones take(v) accepts, stored in ids (room for end - begin).
// Returns how many. take is where a loop bounds, marks and prefetches; it is inlined, so each
// loop compiles to its own plain scan (these are the hottest lines of the server).
template <typename Take>
inline int gather_links(const int32_t *neighbors, size_t begin, size_t end, int *ids, Take &&take) {
    int n = 0;
    for (size_t i = begin; i < end; i++) {
        int32_t v = link_load(neighbors + i);
        if (v < 0) break;
        if (take(v)) ids[n++] = v;
    }
    return n;
}

// gather_unvisited's bound: a search passes its published count; the inserter, which sees all
// of its graph, passes Unbounded, and the comparison is compiled away.
struct Unbounded {};
inline bool below(int32_t v, int32_t count) { return v < count; }
inline bool below(int32_t, Unbounded) { return true; }

// A beam's step (insertion and search alike): the neighbours in [begin, end) it has not
// visited yet and that are below count, each marked visited (seen[v] = stamp) and its row or
// code (row_bytes bytes at rows + v * row_bytes) prefetched for the batch of distances that
// follows.
template <typename Count>
inline int gather_unvisited(const int32_t *neighbors, size_t begin, size_t end, Count count, uint16_t *seen,
                            uint16_t stamp, const uint8_t *rows, size_t row_bytes, int *ids) {
    return gather_links(neighbors, begin, end, ids, [&](int32_t v) {
        if (!below(v, count) || seen[v] == stamp) return false;
        seen[v] = stamp;
        _mm_prefetch(reinterpret_cast<const char *>(rows + (size_t)v * row_bytes), _MM_HINT_T0);
        return true;
    });
}

inline uint64_t pack_entry(int32_t entry, int32_t max_level) {
    return ((uint64_t)(uint32_t)max_level << 32) | (uint32_t)entry;
}

struct LiveGraph {
    int64_t capacity = 0;
    std::atomic<int64_t> count{0};     // published positions (release by the inserter)
    std::atomic<uint64_t> entry{0};    // pack_entry(entry point, max level), published after count
    std::atomic<bool> inserting{false};  // guards "one insert call at a time"
    // FAISS levels (1 = level 0 only) drawn at reserve time for positions planned_from..capacity-1,
    // from hnsw.random_level(): the same stream FAISS's own add would draw.
    std::vector<int> planned;
    int64_t planned_from = 0;
    std::vector<omp_lock_t> locks;     // one per position < capacity

    ~LiveGraph() { for (auto &l : locks) omp_destroy_lock(&l); }
};

// Where one search walks: raw pointers into the graph and storage, and the published state.
struct GraphView {
    const int32_t *neighbors;
    const size_t *offsets;
    const int *cum;           // hnsw.cum_nneighbor_per_level
    const float *base;        // storage rows (flat storage; what the insertion loop reads)
    const uint8_t *codes;     // storage codes: the rows, or 8/16-bit codes (CodeSpace)
    CodeSpace space;
    size_t d;
    bool ip;
    int64_t count;            // positions this search may touch: [0, count)
    int32_t entry;            // -1 if empty
    int32_t max_level;
    int max_degree;           // the largest list length on any level

    void range(int64_t v, int level, size_t &begin, size_t &end) const {
        size_t o = offsets[v];
        begin = o + cum[level];
        end = o + cum[level + 1];
    }
    const float *row(int64_t v) const { return base + v * d; }
    const uint8_t *code(int64_t v) const { return codes + v * space.code_size; }
};

// The view a search uses: the published state of a live graph, or the index's plain fields.
GraphView graph_view(const faiss::IndexHNSW &index, const LiveGraph *live);

// The largest number of neighbours a node has on any level of this graph.
int max_degree(const faiss::HNSW &hnsw);

// hnsw_search.cpp. Runs the shim's search on an HNSW index with FastFlat or FastSQ storage.
void fast_hnsw_search(const faiss::IndexHNSW &index, const LiveGraph *live, int64_t n, const float *x,
                      int64_t k, int ef, const uint8_t *members, size_t member_bytes, float *distances,
                      int64_t *labels);

// hnsw_build.cpp: a live graph (reserve, then insert), and a graph built at once from rows the
// caller holds, then stored by the index's storage (flat rows, or SQ8/fp16 codes).
void hnsw_reserve(faiss::IndexHNSW &index, std::unique_ptr<LiveGraph> &live, int64_t capacity);
// efc > 0 replaces the index's efConstruction for this call (the stored value is unchanged).
void hnsw_insert(faiss::IndexHNSW &index, LiveGraph &live, int64_t n, const float *x, int threads, int efc);
void hnsw_build(faiss::IndexHNSW &index, int64_t n, const float *x, int threads);

// hnsw_link.cpp: the insertion loop. What one link_nodes call reads and writes.
struct LinkTarget {
    faiss::HNSW &h;
    const float *base;   // float rows of every position < first + n (the storage's, or the caller's)
    size_t d;
    bool ip;             // inner product (HNSW's distance is its negation), else squared L2
    omp_lock_t *locks;   // one per position < capacity
    size_t capacity;     // >= first + n: the size of the workers' visited tables
    int efc;             // the beam: h.efConstruction, or a cheaper one for this call
};
// Links nodes first..first+n-1, already appended to t.h (levels, offsets, -1-filled lists), into
// the graph with up to `threads` workers (<= 0: omp_get_max_threads()), at t.efc.
// Publishes nothing: the caller does.
void link_nodes(const LinkTarget &t, int64_t first, int64_t n, int threads);
// The nice value (and, with idle, SCHED_IDLE) of the calling thread and of the workers its
// later link_nodes calls start.
void set_build_priority(int nice, bool idle);

// A per-thread visited table of at least n entries and a fresh stamp for it (a uint16 stamp:
// the table is cleared once every 65535 uses).
uint16_t *visited_table(size_t n, uint16_t &stamp);

}  // namespace lk

#endif
