// index_memory.h: counting the bytes an index keeps in memory (lk_index_memory_get).
// Threads: reads only; a live HNSW graph's arrays are read through their data pointers below
// the published count (their std::vector sizes are the inserter's to change: hnsw_graph.h);
// IVF lists must not be appended to meanwhile (the caller's lock).
#ifndef LOOKALIKE_INDEX_MEMORY_H
#define LOOKALIKE_INDEX_MEMORY_H

#include "lookalike_faiss.h"

#include <faiss/Index.h>

#include <cstdint>

namespace lk {

// Adds what `index`, holding `count` vectors (a live graph's published count), keeps in
// memory to `memory`, by kind (lookalike_faiss.h: lk_index_memory).
void add_memory(const faiss::Index *index, int64_t count, lk_index_memory &memory);

}  // namespace lk

#endif
