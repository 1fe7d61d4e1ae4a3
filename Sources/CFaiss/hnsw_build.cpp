// hnsw_build.cpp: the two ways the shim builds an HNSW graph, both with its own insertion loop
// (link_nodes, hnsw_link.cpp) and FAISS 1.7.3's level stream:
//   - a live graph (lk_hnsw_reserve, then lk_hnsw_insert), FastFlat storage only: rows are
//     appended to the storage and linked while searches run (hnsw_graph.h says why that is safe);
//   - a graph built at once from rows the caller holds (lk_hnsw_build), on an empty index with
//     FastFlat or FastSQ storage (HNSWn, HNSWn,SQ8, HNSWn,SQfp16): the nodes are linked on the
//     caller's float rows, read in place, and only then stored (encoded, for SQ) by the storage's
//     own add. So a compressed graph's links are those a flat build gives on the same rows (one
//     thread: equal; more: the same in distribution), and FAISS's own add, whose heuristic
//     decodes codes for every node-to-node distance, is not used.
// Invariants: both append a node's level, offsets and -1-filled lists before linking it, and
// draw levels from hnsw.random_level() in the order FAISS's add would (one per vector, in
// position order). A build that fails leaves the index empty again (graph and storage).
// Threads: one insert or build at a time per index (an insert checks it; a build is on an index
// nobody else holds yet); lk_hnsw_reserve only while nobody searches; any number of searches
// during an insert, none during a build.
#include "hnsw_graph.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace lk {

namespace {

// Appends n nodes of the given levels (1 = level 0 only) with empty lists, after the last.
void append_nodes(faiss::HNSW &h, const int *levels, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        h.levels.push_back(levels[i]);
        h.offsets.push_back(h.offsets.back() + (size_t)h.cum_nb_neighbors(levels[i]));
    }
    h.neighbors.resize(h.offsets.back(), -1);
}

// One omp lock per node of a build at once (a live graph keeps its own, in LiveGraph).
struct Locks {
    std::vector<omp_lock_t> locks;
    explicit Locks(size_t n) : locks(n) { for (auto &l : locks) omp_init_lock(&l); }
    ~Locks() { for (auto &l : locks) omp_destroy_lock(&l); }
};

}  // namespace

void hnsw_reserve(faiss::IndexHNSW &index, std::unique_ptr<LiveGraph> &live, int64_t capacity) {
    if (live && live->inserting.load()) throw std::logic_error("an insert is running on this index");
    auto *flat = static_cast<faiss::IndexFlat *>(index.storage);
    faiss::HNSW &h = index.hnsw;
    int64_t n0 = index.ntotal;
    if (flat->ntotal != n0 || (int64_t)h.levels.size() != n0 || (int64_t)h.offsets.size() != n0 + 1)
        throw std::logic_error("HNSW graph and storage disagree on their size");
    if (capacity < n0) throw std::invalid_argument("capacity is below the index's current size");
    if (capacity > std::numeric_limits<int32_t>::max())
        throw std::invalid_argument("capacity beyond FAISS HNSW's 32-bit node ids");

    auto g = std::make_unique<LiveGraph>();
    g->capacity = capacity;
    g->planned_from = n0;
    size_t want = (size_t)(capacity - n0);
    // Keep the levels an earlier reserve drew for positions not yet used: the stream stays FAISS's.
    if (live && live->planned_from <= n0) {
        size_t skip = (size_t)(n0 - live->planned_from);
        if (skip < live->planned.size())
            g->planned.assign(live->planned.begin() + skip,
                              live->planned.begin() + std::min(live->planned.size(), skip + want));
    }
    g->planned.reserve(want);
    while (g->planned.size() < want) g->planned.push_back(h.random_level() + 1);

    size_t slots = h.offsets.back();
    for (int level : g->planned) slots += (size_t)h.cum_nb_neighbors(level);
    flat->codes.reserve((size_t)capacity * flat->code_size);
    h.levels.reserve((size_t)capacity);
    h.offsets.reserve((size_t)capacity + 1);
    h.neighbors.reserve(slots);

    g->locks.resize((size_t)capacity);
    for (auto &l : g->locks) omp_init_lock(&l);
    g->count.store(n0, std::memory_order_release);
    g->entry.store(pack_entry(h.entry_point, h.max_level), std::memory_order_release);
    live = std::move(g);
}

void hnsw_insert(faiss::IndexHNSW &index, LiveGraph &live, int64_t n, const float *x, int threads, int efc) {
    if (n < 0) throw std::invalid_argument("negative count");
    bool idle = false;
    if (!live.inserting.compare_exchange_strong(idle, true))
        throw std::logic_error("another lk_hnsw_insert is running on this index");
    struct Done {
        LiveGraph &live;
        ~Done() { live.inserting.store(false); }
    } done{live};

    auto *flat = static_cast<faiss::IndexFlat *>(index.storage);
    faiss::HNSW &h = index.hnsw;
    const int64_t n0 = live.count.load(std::memory_order_relaxed);  // we are its only writer
    if (index.ntotal != n0 || flat->ntotal != n0 || (int64_t)h.levels.size() != n0)
        throw std::logic_error("the index was changed outside lk_hnsw_insert after lk_hnsw_reserve");
    if (n > live.capacity - n0)
        throw std::invalid_argument("insert of " + std::to_string(n) + " vectors beyond the reserved capacity (" +
                                    std::to_string(live.capacity) + ", holding " + std::to_string(n0) + ")");
    if (n == 0) return;

    // Everything below stays within what lk_hnsw_reserve reserved; check before changing anything.
    const size_t cs = flat->code_size;
    const int *levels = live.planned.data() + (n0 - live.planned_from);
    size_t slots = h.offsets.back();
    for (int64_t i = 0; i < n; i++) slots += (size_t)h.cum_nb_neighbors(levels[i]);
    if (flat->codes.capacity() < (size_t)(n0 + n) * cs || h.levels.capacity() < (size_t)(n0 + n) ||
        h.offsets.capacity() < (size_t)(n0 + n + 1) || h.neighbors.capacity() < slots)
        throw std::logic_error("reserved graph storage is smaller than planned");

    // Rows, levels, offsets and empty lists of the new nodes; nobody reads them yet.
    flat->codes.insert(flat->codes.end(), reinterpret_cast<const uint8_t *>(x),
                       reinterpret_cast<const uint8_t *>(x) + (size_t)n * cs);
    append_nodes(h, levels, n);
    LinkTarget target{h, reinterpret_cast<const float *>(flat->codes.data()), (size_t)flat->d,
                      flat->metric_type == faiss::METRIC_INNER_PRODUCT, live.locks.data(), (size_t)live.capacity, efc};
    // On an allocation failure the graph holds part of the batch, unpublished.
    link_nodes(target, n0, n, threads);

    // Publish: count first, then the entry (hnsw_graph.h).
    flat->ntotal = n0 + n;
    index.ntotal = n0 + n;
    live.count.store(n0 + n, std::memory_order_release);
    live.entry.store(pack_entry(h.entry_point, h.max_level), std::memory_order_release);
}

void hnsw_build(faiss::IndexHNSW &index, int64_t n, const float *x, int threads) {
    if (n < 0) throw std::invalid_argument("negative count");
    auto *storage = static_cast<faiss::IndexFlatCodes *>(index.storage);  // FastFlat or FastSQ
    faiss::HNSW &h = index.hnsw;
    if (index.ntotal != 0 || storage->ntotal != 0 || !h.levels.empty())
        throw std::invalid_argument("lk_hnsw_build needs an empty index: it links the rows it is given and no others "
                                    "(add to a built index with lk_index_add)");
    if (!index.is_trained || !storage->is_trained) throw std::invalid_argument("index is not trained");
    if (n > std::numeric_limits<int32_t>::max())
        throw std::invalid_argument("build of more vectors than FAISS HNSW's 32-bit node ids allow");
    if (n == 0) return;

    // FAISS's prepare_level_tab draws one level per vector, in position order.
    std::vector<int> levels((size_t)n);
    for (int &level : levels) level = h.random_level() + 1;
    try {
        size_t slots = h.offsets.back();
        for (int level : levels) slots += (size_t)h.cum_nb_neighbors(level);
        h.levels.reserve((size_t)n);
        h.offsets.reserve((size_t)n + 1);
        h.neighbors.reserve(slots);
        append_nodes(h, levels.data(), n);
        Locks locks((size_t)n);
        LinkTarget target{h, x, (size_t)index.d, index.metric_type == faiss::METRIC_INNER_PRODUCT,
                          locks.locks.data(), (size_t)n, 0};
        link_nodes(target, 0, n, threads);
        storage->add(n, x);  // the codes (SQ8/fp16 encoded, or the rows as they are)
    } catch (...) {
        h.levels.clear();
        h.offsets.assign(1, 0);
        h.neighbors.clear();
        h.entry_point = -1;
        h.max_level = -1;
        storage->reset();
        throw;
    }
    index.ntotal = n;
}

}  // namespace lk
