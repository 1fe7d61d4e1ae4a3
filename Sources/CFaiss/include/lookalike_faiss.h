/*
 * lookalike_faiss.h: the small C surface Lookalike uses of FAISS (Debian's libfaiss-dev 1.7.3,
 * which ships a static C++ library and no C-API code).
 *
 * Owns: nothing but opaque faiss::Index pointers handed to the caller.
 * Invariants:
 *   - Every function catches every C++ exception at the boundary and reports it as a non-zero
 *     return plus a message in the caller's buffer. A FAISS error must never abort the server.
 *   - Labels are positions (0..ntotal-1 in add order). The Swift side maps positions to its own
 *     64-bit ids; we never wrap indexes in IndexIDMap because that rejects search parameters.
 * Threads: a const operation (search, reconstruct, write, info) may run on many threads at
 * once on one index; a mutating one (train, add, set_*, lk_hnsw_reserve, lk_hnsw_build) must be
 * alone on that index. The one exception is a live HNSW graph (lk_hnsw_reserve, then lk_hnsw_insert): while one
 * lk_hnsw_insert runs, lk_index_search, lk_index_info_get, lk_index_reconstruct,
 * lk_index_flat_vectors and lk_index_hnsw_links may run on any number of threads and see the
 * graph as of the last published count; write and clone must wait for the insert to return.
 * The Swift index layer and the engine enforce this.
 */
#ifndef LOOKALIKE_FAISS_H
#define LOOKALIKE_FAISS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lk_index lk_index;

enum { LK_METRIC_L2 = 0, LK_METRIC_IP = 1 };

enum {
    LK_KIND_OTHER = 0,
    LK_KIND_FLAT = 1,
    LK_KIND_HNSW = 2,
    LK_KIND_IVF = 3,
};

/* How an HNSW index stores its vectors (lk_index_info.storage). */
enum {
    LK_STORAGE_OTHER = 0,  /* not HNSW, or a storage the shim's loop does not score (PQ, SQ4...) */
    LK_STORAGE_FLAT = 1,   /* float32 rows (HNSWn) */
    LK_STORAGE_SQ8 = 2,    /* one byte a component, a min and a range per dimension (HNSWn,SQ8) */
    LK_STORAGE_FP16 = 3,   /* IEEE half floats (HNSWn,SQfp16) */
};

typedef struct {
    int kind;              /* LK_KIND_* of the outermost searchable index */
    int dim;
    int metric;            /* LK_METRIC_* */
    int is_trained;
    int64_t ntotal;
    int64_t nlist;         /* IVF: number of inverted lists, else 0 */
    int hnsw_m;            /* HNSW: neighbours per node, else 0 */
    int hnsw_ef_search;    /* HNSW: the index's own efSearch (the heap bound), else 0 */
    int hnsw_ef_construction;
    int64_t train_hint;    /* vectors training wants before it gives good centroids/codebooks */
    int64_t code_size;     /* bytes per stored vector */
    int fast_distances;    /* 1 when HNSW storage uses the shim's AVX2 distances, or an IVF index is
                              searched by the shim's scanner (ivf_scan.h) or, IVF-PQ, takes its
                              coarse step (ivfpq_search.h) */
    int storage;           /* HNSW: LK_STORAGE_*, else LK_STORAGE_OTHER */
    double ivf_imbalance;  /* IVF: sum(list size^2) * nlist / ntotal^2 (1 = even lists); else 0 */
    int pre_transform;     /* 1 when the searchable index sits behind a pre-transform (PCA, OPQ...):
                              kind, storage and the HNSW fields are then the inner index's */
    int polysemous_training; /* 1 when training a PQ would also run FAISS's polysemous code
                                reordering (lk_index_create turns it off: no search here uses it) */
} lk_index_info;

typedef struct {
    int ef_search;           /* HNSW per-call efSearch; <= 0 uses the index's own */
    int nprobe;              /* IVF per-call nprobe; <= 0 uses the index's own */
    const uint8_t *bitmap;   /* if non-null, only positions whose bit is set are returned */
    size_t bitmap_bytes;
    int threads;             /* if > 0, OpenMP threads for this call (set on the calling thread) */
    int faiss_search;        /* HNSW on flat or SQ storage, IVF-Flat/SQ8/fp16/PQ: non-zero runs FAISS's
                                own search instead of the shim's (tests, A/B); an error on a live
                                HNSW graph */
} lk_search_params;

/* Create an index from a FAISS factory string ("Flat", "HNSW32", "IVF1024,SQ8", ...). */
int lk_index_create(const char *spec, int dim, int metric, lk_index **out,
                    char *err, size_t errlen);
void lk_index_free(lk_index *index);
int lk_index_info_get(const lk_index *index, lk_index_info *info, char *err, size_t errlen);

/* The bytes an index holds in memory, by what they are (MEMORY USAGE, VINFO's memory-* fields).
 * Sizes of what is in use (published positions, list entries), not of reserved capacity.
 * Threads: as lk_index_info_get; on a live HNSW graph it reads the published count only. A
 * live IVF index must not be added to meanwhile (IVFSegment holds its lock). */
typedef struct {
    int64_t vector_bytes;  /* stored vectors or codes outside IVF lists: Flat, SQ, PQ, HNSW storage */
    int64_t link_bytes;    /* HNSW: neighbour slots, their offsets and the levels */
    int64_t list_bytes;    /* IVF: the codes and ids in the inverted lists */
    int list_mapped;       /* 1 when the IVF lists are a memory-mapped file (lk_index_read mmap) */
    int64_t other_bytes;   /* trained tables: IVF centroids, SQ ranges, PQ codebooks, transforms */
} lk_index_memory;

int lk_index_memory_get(const lk_index *index, lk_index_memory *memory, char *err, size_t errlen);

/* HNSW only: set efConstruction (if > 0) and the index's efSearch (if > 0). Per-call efSearch
 * larger than the index's own is capped by its candidate heap in 1.7.3, so set this to the
 * largest value any query will use. */
int lk_index_set_hnsw(lk_index *index, int ef_construction, int ef_search,
                      char *err, size_t errlen);

int lk_index_train(lk_index *index, int64_t n, const float *x, char *err, size_t errlen);
/* FAISS's own add; on a live HNSW graph (after lk_hnsw_reserve) it is lk_hnsw_insert with the
 * OpenMP default of threads. */
int lk_index_add(lk_index *index, int64_t n, const float *x, char *err, size_t errlen);

/* A live HNSW graph: one thread inserts while others search (hnsw_build.cpp, hnsw_graph.h). */

/* HNSW with flat float storage only (HNSWn, any M). Makes room for `capacity` vectors in total,
 * so that later lk_hnsw_insert calls never move the storage rows or the graph arrays
 * (levels, offsets, neighbors) that concurrent searches read. Call before the first insert,
 * on an index nobody searches yet. Error for another index type.
 * The index may already hold vectors (a graph built by lk_index_add or read from a file); from
 * here on it is live: lk_index_add inserts through lk_hnsw_insert. The levels of the future nodes
 * are drawn now from FAISS's hnsw.random_level(), in the order FAISS's own add would draw them.
 * Costs about 4 bytes (a lock) + 4 bytes (a level) per reserved position beyond the vectors and
 * links. May be called again (larger or smaller, >= ntotal) while nobody searches or inserts. */
int lk_hnsw_reserve(lk_index *index, int64_t capacity, char *err, size_t errlen);

/* Appends n vectors at positions ntotal..ntotal+n-1 and links them into the graph, using up to
 * `threads` OpenMP threads (<= 0: the OpenMP default), with the index's efConstruction, or with
 * ef_construction when it is > 0 (a cheaper beam for this call: the indexer catching up).
 * (The workers are the calling thread plus threads - 1 it starts per call; omp_get_max_threads()
 * gives the default count.)
 * One insert call at a time per index; any number of lk_index_search calls may run at the same
 * time and must stay memory-safe and return only positions < the count published when they
 * started. The new count is published (release) only when all n are linked.
 * Error (nothing changed) if ntotal + n > the reserved capacity.
 * The graph is FAISS 1.7.3's (same levels, order, neighbour heuristic and reverse-link shrink),
 * so write/read/clone and FAISS's own search accept it. A second concurrent call is an error;
 * an error before lk_hnsw_reserve. */
int lk_hnsw_insert(lk_index *index, int64_t n, const float *x, int threads, int ef_construction, char *err,
                   size_t errlen);

/* A graph built at once (hnsw_build.cpp): on an empty, trained HNSW index with flat, 8-bit or
 * fp16 L2/IP storage (HNSWn, HNSWn,SQ8, HNSWn,SQfp16; no pre-transform, not reserved live),
 * links the n float rows x with the shim's insertion loop (lk_hnsw_insert's: FAISS 1.7.3's
 * levels, order and neighbour heuristic, every distance between float rows, x read in place),
 * using up to `threads` threads (<= 0: the OpenMP default), then stores x through the storage's
 * own add (encoded to codes for SQ). The result is a plain IndexHNSWFlat / IndexHNSWSQ that
 * write/read/clone, FAISS's search and later lk_index_add accept. With one thread its links
 * equal those lk_hnsw_insert gives a fresh HNSWn of the same M and efConstruction on the same
 * rows in one call. For compressed storage this replaces FAISS's add, whose heuristic decodes
 * codes for every node-to-node distance. Error (the index left empty) on failure, for a
 * non-empty index or another index type. Nobody may use the index during the call. */
int lk_hnsw_build(lk_index *index, int64_t n, const float *x, int threads, char *err, size_t errlen);

/* Nice value (setpriority on the calling thread and on every worker thread of later
 * lk_hnsw_insert and lk_hnsw_build calls made from this thread), so index building yields to
 * searches; with idle != 0 also the SCHED_IDLE policy, so a waking search preempts a builder
 * at once. (The workers take the value as they start.)
 * Raising priority again (a lower value, or leaving SCHED_IDLE) needs CAP_SYS_NICE; without it
 * that part is ignored. */
void lk_set_build_priority(int nice, int idle);

/* Search n queries; distances and labels are n*k each; missing results have label -1.
 * Every HNSW index with flat, 8-bit or fp16 L2/IP storage is searched by the shim's loop
 * (hnsw_search.cpp, sq_storage.h);
 * on a live graph it reads the published count once and returns only positions below it.
 * IVF-Flat and IVF-SQ8/SQfp16 (no pre-transform, in-memory or mmapped lists) are searched by the
 * shim's coarse quantizer and list scanner (ivf_scan.h), with FAISS 1.7.3's results. */
int lk_index_search(const lk_index *index, int64_t n, const float *x, int64_t k,
                    const lk_search_params *params, float *distances, int64_t *labels,
                    char *err, size_t errlen);

int lk_index_reconstruct(const lk_index *index, int64_t position, float *out,
                         char *err, size_t errlen);

/* A deep copy (e.g. of a trained, empty IVF index used as the template for new segments).
 * An HNSW index is copied through FAISS's writer and reader (1.7.3's clone_index turns every
 * IndexHNSW* into a plain IndexHNSW, which write_index then refuses). */
int lk_index_clone(const lk_index *index, lk_index **out, char *err, size_t errlen);

int lk_index_write(const lk_index *index, const char *path, char *err, size_t errlen);
/* mmap != 0 asks for IO_FLAG_MMAP (IVF only: the index must then never be added to). */
int lk_index_read(const char *path, int mmap, lk_index **out, char *err, size_t errlen);

/* Atomically clears bit `pos` of a selector bitmap that searches may be reading; returns 1 if
 * it was set. (Swift's atomics cannot address foreign memory.) */
static inline int lk_bitmap_clear_bit(uint8_t *bitmap, size_t pos) {
    uint8_t mask = (uint8_t)(1u << (pos & 7));
    uint8_t previous = __atomic_fetch_and(&bitmap[pos >> 3], (uint8_t)~mask, __ATOMIC_SEQ_CST);
    return (previous & mask) != 0;
}

/* The index's vectors as contiguous float32 rows (ntotal x dim) when it stores them as they
 * are: a Flat index, or the flat storage of an HNSW index. NULL otherwise (SQ, PQ, IVF...).
 * Valid while the index is alive and not added to. */
const float *lk_index_flat_vectors(const lk_index *index);

/* HNSW only (VLINKS): the graph links of the node at `position`. *levels receives how many
 * levels the node is on (1 = level 0 only) and *total how many links it has on all of them;
 * counts[l] (for l < max_levels) receives how many of level l's it wrote to `links`, which
 * receives their positions, level 0 first, each level in FAISS's order, as far as `capacity`
 * allows. A first call with max_levels and capacity 0 sizes the buffers of a second. On a live
 * graph the lists may change between the two calls; the counts never add up beyond `capacity`,
 * and links to unpublished positions are left out. Error for another index. */
int lk_index_hnsw_links(const lk_index *index, int64_t position, int *levels, int *counts,
                        int max_levels, int64_t *links, size_t capacity, size_t *total,
                        char *err, size_t errlen);

/* Tests and kernels' A/B: the distances (FAISS's convention: inner product, or squared L2) of
 * query x to the stored vectors at positions[0..n-1] of an HNSW index, as computed by
 * mode 0: the shim's kernels (what the search loop uses; AVX2 when available),
 * mode 1: the shim's scalar reference kernels,
 * mode 2: FAISS 1.7.3's own distance computer for the storage (its ScalarQuantizer's or
 *         IndexFlat's, not the shim's).
 * Error for an index that is not HNSW or a position out of range. */
int lk_index_code_distances(const lk_index *index, const float *x, const int64_t *positions, int64_t n,
                            int mode, float *out, char *err, size_t errlen);

/* OpenMP threads FAISS may use inside one call. */
void lk_set_omp_threads(int n);

/* A trained IVF index (no pre-transform): the inverted list of each of n vectors, into
 * lists[n]. Reads the quantizer only: may run beside searches and adds. */
int lk_ivf_assign(const lk_index *index, int64_t n, const float *x, int64_t *lists, char *err,
                  size_t errlen);
/* Appends n vectors to the lists lk_ivf_assign gave (positions ntotal...). Writes the lists:
 * no search of this index may run meanwhile (the caller's lock). */
int lk_ivf_add_assigned(lk_index *index, int64_t n, const float *x, const int64_t *lists,
                        char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
