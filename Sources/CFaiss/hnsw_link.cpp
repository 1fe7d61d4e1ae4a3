// hnsw_link.cpp: the shim's HNSW insertion loop proper (link_nodes): links nodes that were
// already appended to a graph (their levels, offsets and empty lists) into it, reading float
// rows the caller points to. Shared by both ways the shim builds a graph (hnsw_build.cpp): the
// live graph (lk_hnsw_insert, rows in its FastFlat storage) and the build at once from rows
// (lk_hnsw_build, the caller's rows, for compressed storage too).
//
// It builds the graph FAISS 1.7.3's IndexHNSW::add builds (faiss/IndexHNSW.cpp
// hnsw_add_vertices, faiss/impl/HNSW.cpp add_with_locks), with the same semantics step by step:
//   - the nodes' levels are given (FAISS's hnsw.random_level() stream, drawn by the caller);
//   - a batch is bucketed by level, highest first, each bucket shuffled with RandomGenerator(789);
//   - per node: greedy descent from the entry point down to the node's level + 1, then on each
//     of its levels search_neighbors_to_add (a beam of efConstruction) from the descent's
//     nearest (FAISS does not move it between levels, and neither do we), FAISS's neighbour
//     heuristic (shrink_neighbor_list) down to nb_neighbors(level), links to the kept ones
//     farthest first, then the reverse links, each shrunk the same way when the list is full;
//   - per-node locks (omp locks, as FAISS's; libgomp's lock functions need no -fopenmp): a node's
//     own lock is held while its lists are written, and released while it adds reverse links
//     (one lock held at a time: no deadlock).
// What differs is speed only: a per-thread stamp visited table sized to the capacity (FAISS
// allocates one of ntotal bytes per thread per level bucket), four distances at a time sharing
// the loads of the query row, and the rows of the next batch prefetched. Every distance is
// between float rows (exact), whatever the index stores: FAISS's add on SQ storage decodes
// codes for each node-to-node distance instead.
// Floating-point sums are grouped differently, so ties may break differently: the graph is
// FAISS's in distribution, not bit for bit. With one thread it is deterministic: the same rows,
// levels and order give the same links, whichever storage the index has.
// Invariants: links are written with link_store (hnsw_graph.h), so a concurrent search of a live
// graph reads valid ids; the entry point and max level change under one mutex. Nothing is
// published here: the caller publishes (live graph) or sets ntotal (build) afterwards.
// Threads: one link_nodes call at a time per graph, with up to `threads` workers (the caller and
// threads it starts per level bucket; this file is compiled without -fopenmp).
#include "hnsw_graph.h"

#include <faiss/utils/random.h>
#include <immintrin.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <mutex>
#include <queue>
#include <thread>

namespace lk {

namespace {

using NodeDistCloser = faiss::HNSW::NodeDistCloser;    // in a priority_queue: top is farthest
using NodeDistFarther = faiss::HNSW::NodeDistFarther;  // in a priority_queue: top is nearest

// std::priority_queue (the same heap, so the same order among ties as FAISS's) whose storage
// a worker keeps from one use to the next instead of allocating it per node and level.
template <typename T>
struct Heap : std::priority_queue<T> {
    void clear() { this->c.clear(); }
};

thread_local bool tl_nice_set = false;
thread_local int tl_nice = 0;
thread_local bool tl_idle = false;

// SCHED_IDLE on top of the nice value: a search thread that wakes preempts an idle-policy
// builder at once, where a niced one may keep the core for the rest of its slice (EEVDF).
void apply_priority(int nice, bool idle) {
    const pid_t tid = (pid_t)syscall(SYS_gettid);
    (void)setpriority(PRIO_PROCESS, (id_t)tid, nice);
    if (idle) {
        sched_param param{};
        (void)sched_setscheduler(tid, SCHED_IDLE, &param);
    }
}

// What every worker of one insert shares.
struct Graph {
    faiss::HNSW &h;
    int32_t *nb;
    const size_t *offsets;
    const int *cum;
    const float *base;
    size_t d;
    bool ip;
    int efc;
    omp_lock_t *locks;
    std::mutex &entry_mutex;
    size_t capacity;
    int max_degree;

    void range(int64_t v, int level, size_t &b, size_t &e) const {
        size_t o = offsets[v];
        b = o + cum[level];
        e = o + cum[level + 1];
    }
    const float *row(int64_t v) const { return base + v * d; }
};

struct Worker {
    const Graph &g;
    std::vector<int> ids;
    std::vector<float> ds;
    std::vector<int32_t> linked;
    Heap<NodeDistCloser> targets, link_set;
    Heap<NodeDistFarther> candidates, shrink_input;
    std::vector<NodeDistFarther> shrink_output;

    explicit Worker(const Graph &graph) : g(graph), ids(graph.max_degree + 1), ds(graph.max_degree + 1) {}

    float dist(const float *x, int64_t v) const { return hnsw_distance(g.ip, x, g.row(v), g.d); }

    void dists(const float *x, const int *id, int n, float *out) const {
        hnsw_distances(g.ip, x, g.base, g.d, id, n, out);
    }

    // The list of the node a beam will expand next, fetched while this one is scored.
    void prefetch_list(int32_t v, int level) const {
        size_t b, e;
        g.range(v, level, b, e);
        prefetch_bytes(g.nb + b, (e - b) * sizeof(int32_t));
    }

    // FAISS's greedy_update_nearest, the neighbours of the current nearest scored together.
    __attribute__((noinline)) void greedy(const float *q, int level, int32_t &nearest, float &d_nearest) {
        for (;;) {
            int32_t prev = nearest;
            size_t b, e;
            g.range(nearest, level, b, e);
            int n = gather_links(g.nb, b, e, ids.data(), [&](int32_t v) {
                _mm_prefetch(reinterpret_cast<const char *>(g.row(v)), _MM_HINT_T0);
                return true;
            });
            dists(q, ids.data(), n, ds.data());
            for (int i = 0; i < n; i++)
                if (ds[i] < d_nearest) nearest = ids[i], d_nearest = ds[i];
            if (nearest == prev) return;
        }
    }

    // FAISS's search_neighbors_to_add: a beam of efConstruction on one level.
    __attribute__((noinline)) void search_to_add(const float *q, std::priority_queue<NodeDistCloser> &results, int32_t ep, float d_ep,
                       int level) {
        uint16_t stamp;
        uint16_t *seen = visited_table(g.capacity, stamp);
        candidates.clear();
        candidates.emplace(d_ep, ep);
        results.emplace(d_ep, ep);
        seen[ep] = stamp;
        while (!candidates.empty()) {
            const NodeDistFarther &c = candidates.top();
            if (c.d > results.top().d) break;
            int32_t cur = c.id;
            candidates.pop();
            if (!candidates.empty()) prefetch_list(candidates.top().id, level);
            size_t b, e;
            g.range(cur, level, b, e);
            int n = gather_unvisited(g.nb, b, e, Unbounded{}, seen, stamp, reinterpret_cast<const uint8_t *>(g.base),
                                     g.d * sizeof(float), ids.data());
            dists(q, ids.data(), n, ds.data());
            for (int i = 0; i < n; i++) {
                if ((int)results.size() < g.efc || results.top().d > ds[i]) {
                    results.emplace(ds[i], ids[i]);
                    candidates.emplace(ds[i], ids[i]);
                    __builtin_prefetch(g.offsets + ids[i], 0, 3);
                    if ((int)results.size() > g.efc) results.pop();
                }
            }
        }
    }

    // FAISS's HNSW::shrink_neighbor_list: nearest first, keep v1 unless a kept v2 is closer to
    // v1 than the query is. The distances to the kept ones are scored four at a time.
    __attribute__((noinline)) void shrink_list(std::priority_queue<NodeDistFarther> &input, std::vector<NodeDistFarther> &output,
                     int max_size) {
        while (!input.empty()) {
            NodeDistFarther v1 = input.top();
            input.pop();
            const float *x1 = g.row(v1.id);
            bool good = true;
            size_t j = 0;
            for (; good && j + 4 <= output.size(); j += 4) {
                const float *y[4] = {g.row(output[j].id), g.row(output[j + 1].id), g.row(output[j + 2].id),
                                     g.row(output[j + 3].id)};
                float out[4];
                hnsw_distance4(g.ip, x1, y, g.d, out);
                for (int t = 0; t < 4; t++)
                    if (out[t] < v1.d) good = false;
            }
            for (; good && j < output.size(); j++)
                if (dist(x1, output[j].id) < v1.d) good = false;
            if (good) {
                output.push_back(v1);
                if ((int)output.size() >= max_size) return;
            }
        }
    }

    // FAISS's shrink_neighbor_list (the anonymous one): no-op below max_size.
    void shrink(std::priority_queue<NodeDistCloser> &set, int max_size) {
        if ((int)set.size() < max_size) return;
        Heap<NodeDistFarther> &input = shrink_input;
        std::vector<NodeDistFarther> &output = shrink_output;
        input.clear();
        output.clear();
        while (!set.empty()) {
            input.emplace(set.top().d, set.top().id);
            set.pop();
        }
        shrink_list(input, output, max_size);
        for (const NodeDistFarther &v : output) set.emplace(v.d, v.id);
    }

    // FAISS's add_link: append dest to src's list at level, or shrink the full list with dest.
    // The caller holds src's lock.
    __attribute__((noinline)) void add_link(int32_t src, int32_t dest, int level) {
        size_t b, e;
        g.range(src, level, b, e);
        if (link_load(g.nb + e - 1) == -1) {
            size_t i = e;
            while (i > b && link_load(g.nb + i - 1) == -1) i--;
            link_store(g.nb + i, dest);
            return;
        }
        const float *xs = g.row(src);
        Heap<NodeDistCloser> &set = link_set;
        set.clear();
        set.emplace(dist(xs, dest), dest);
        int n = (int)(e - b);
        for (int j = 0; j < n; j++) ids[j] = link_load(g.nb + b + j);
        dists(xs, ids.data(), n, ds.data());
        for (int j = 0; j < n; j++) set.emplace(ds[j], ids[j]);
        shrink(set, n);
        size_t i = b;
        while (!set.empty()) {
            link_store(g.nb + i++, set.top().id);
            set.pop();
        }
        while (i < e) link_store(g.nb + i++, -1);
    }

    // FAISS's add_links_starting_from. Entered and left holding pt's lock.
    void add_links(const float *q, int32_t pt, int32_t nearest, float d_nearest, int level) {
        targets.clear();
        search_to_add(q, targets, nearest, d_nearest, level);
        shrink(targets, g.h.nb_neighbors(level));
        linked.clear();
        while (!targets.empty()) {
            int32_t other = targets.top().id;
            add_link(pt, other, level);
            linked.push_back(other);
            targets.pop();
        }
        omp_unset_lock(&g.locks[pt]);
        for (int32_t other : linked) {
            omp_set_lock(&g.locks[other]);
            add_link(other, pt, level);
            omp_unset_lock(&g.locks[other]);
        }
        omp_set_lock(&g.locks[pt]);
    }

    // FAISS's add_with_locks.
    void add(int32_t pt, int pt_level) {
        int32_t nearest;
        int level;
        {
            std::lock_guard<std::mutex> guard(g.entry_mutex);
            nearest = g.h.entry_point;
            if (nearest == -1) {
                g.h.max_level = pt_level;
                g.h.entry_point = pt;
                return;
            }
            level = g.h.max_level;
        }
        const float *q = g.row(pt);
        omp_set_lock(&g.locks[pt]);
        float d_nearest = dist(q, nearest);
        for (; level > pt_level; level--) greedy(q, level, nearest, d_nearest);
        for (; level >= 0; level--) add_links(q, pt, nearest, d_nearest, level);
        omp_unset_lock(&g.locks[pt]);
        std::lock_guard<std::mutex> guard(g.entry_mutex);
        if (pt_level > g.h.max_level) {
            g.h.max_level = pt_level;
            g.h.entry_point = pt;
        }
    }
};

}  // namespace

void link_nodes(const LinkTarget &t, int64_t first, int64_t n, int threads) {
    faiss::HNSW &h = t.h;
    if (n <= 0) return;
    // FAISS's order: bucket by level, highest first, each bucket shuffled.
    std::vector<int> hist;
    std::vector<int32_t> order((size_t)n);
    for (int64_t i = 0; i < n; i++) {
        int level = h.levels[first + i] - 1;
        if (level >= (int)hist.size()) hist.resize(level + 1, 0);
        hist[level]++;
    }
    {
        std::vector<int> start(hist.size() + 1, 0);
        for (size_t l = 0; l + 1 < hist.size(); l++) start[l + 1] = start[l] + hist[l];
        for (int64_t i = 0; i < n; i++) order[start[h.levels[first + i] - 1]++] = (int32_t)(first + i);
    }

    std::mutex entry_mutex;
    Graph graph{h,
                h.neighbors.data(),
                h.offsets.data(),
                h.cum_nneighbor_per_level.data(),
                t.base,
                t.d,
                t.ip,
                t.efc > 0 ? t.efc : h.efConstruction,
                t.locks,
                entry_mutex,
                t.capacity,
                max_degree(h)};
    // Sources/CFaiss is compiled without -fopenmp (its pragmas would be ignored): the workers
    // are plain threads, started per level bucket, taking chunks of the bucket in turn.
    const int team = std::max(1, threads > 0 ? threads : omp_get_max_threads());
    const bool nice_set = tl_nice_set;
    const int nice = tl_nice;
    const bool idle_policy = tl_idle;
    faiss::RandomGenerator rng2(789);
    int i1 = (int)n;
    for (int pt_level = (int)hist.size() - 1; pt_level >= 0; pt_level--) {
        int i0 = i1 - hist[pt_level];
        for (int j = i0; j < i1; j++) std::swap(order[j], order[j + rng2.rand_int(i1 - j)]);
        std::atomic<int> next{i0};
        std::exception_ptr failure;
        std::mutex failure_mutex;
        auto work = [&] {
            try {
                Worker worker(graph);
                for (int c; (c = next.fetch_add(16)) < i1;)
                    for (int i = c; i < std::min(c + 16, i1); i++) worker.add(order[i], pt_level);
            } catch (...) {
                std::lock_guard<std::mutex> guard(failure_mutex);
                if (!failure) failure = std::current_exception();
                next.store(i1);
            }
        };
        int helpers = i1 - i0 > 100 ? team - 1 : 0;  // FAISS too runs small buckets on one thread
        std::vector<std::thread> pool;
        for (int k = 0; k < helpers; k++)
            pool.emplace_back([&] {
                if (nice_set) apply_priority(nice, idle_policy);
                work();
            });
        work();
        for (auto &th : pool) th.join();
        // Only an allocation failure can land here; the graph holds part of the batch.
        if (failure) std::rethrow_exception(failure);
        i1 = i0;
    }
}

void set_build_priority(int nice, bool idle) {
    tl_nice_set = true;
    tl_nice = nice;
    tl_idle = idle;
    apply_priority(nice, idle);
}

}  // namespace lk
