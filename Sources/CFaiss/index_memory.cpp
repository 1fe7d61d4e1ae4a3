// index_memory.cpp: what an index keeps in memory, by kind of bytes (lk_index_memory_get).
//
// Owns: nothing; reads FAISS's structures' sizes (vectors, graph arrays, inverted lists,
// trained tables) and adds them up. No loop over vectors: cost is O(nlist) for IVF, O(1) else.
// Threads: as lk_index_info_get (index_memory.h).
#include "index_memory.h"

#include "sq_storage.h"

#include <faiss/IndexFlatCodes.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexPQ.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/VectorTransform.h>
#include <faiss/invlists/OnDiskInvertedLists.h>

#include <exception>

namespace lk {

// Trained tables an index keeps besides its vectors: SQ ranges (and FastSQ's derived a/b),
// PQ codebooks and IVFPQ's precomputed table.
static int64_t table_bytes(const faiss::Index *ix) {
    size_t floats = 0;
    if (auto *sq = dynamic_cast<const faiss::IndexScalarQuantizer *>(ix)) floats += sq->sq.trained.size();
    if (auto *fsq = dynamic_cast<const lk::FastSQ *>(ix)) floats += fsq->a.size() + fsq->b.size();
    if (auto *pq = dynamic_cast<const faiss::IndexPQ *>(ix)) floats += pq->pq.centroids.size();
    if (auto *ivfpq = dynamic_cast<const faiss::IndexIVFPQ *>(ix))
        floats += ivfpq->pq.centroids.size() + ivfpq->precomputed_table.size();
    if (auto *ivfsq = dynamic_cast<const faiss::IndexIVFScalarQuantizer *>(ix)) floats += ivfsq->sq.trained.size();
    return (int64_t)(floats * sizeof(float));
}

static int64_t memory_total(const lk_index_memory &m) { return m.vector_bytes + m.link_bytes + m.list_bytes + m.other_bytes; }

void add_memory(const faiss::Index *ix, int64_t count, lk_index_memory &m) {
    while (auto *pt = dynamic_cast<const faiss::IndexPreTransform *>(ix)) {
        for (const faiss::VectorTransform *vt : pt->chain)
            if (auto *lt = dynamic_cast<const faiss::LinearTransform *>(vt))
                m.other_bytes += (int64_t)((lt->A.size() + lt->b.size()) * sizeof(float));
        ix = pt->index;
    }
    if (auto *hnsw = dynamic_cast<const faiss::IndexHNSW *>(ix)) {
        const faiss::HNSW &g = hnsw->hnsw;
        size_t slots = g.offsets.data() == nullptr ? 0 : g.offsets.data()[count];
        m.link_bytes += (int64_t)(slots * sizeof(faiss::HNSW::storage_idx_t) + (count + 1) * sizeof(size_t) +
                                  count * sizeof(int));
        if (hnsw->storage != nullptr) {
            lk_index_memory storage{};
            add_memory(hnsw->storage, count, storage);
            m.vector_bytes += memory_total(storage) - storage.other_bytes;
            m.other_bytes += storage.other_bytes;
        }
    } else if (auto *ivf = dynamic_cast<const faiss::IndexIVF *>(ix)) {
        if (ivf->invlists != nullptr) {
            for (size_t i = 0; i < ivf->nlist; i++)
                m.list_bytes += (int64_t)(ivf->invlists->list_size(i) * (ivf->code_size + sizeof(faiss::Index::idx_t)));
            if (dynamic_cast<const faiss::OnDiskInvertedLists *>(ivf->invlists) != nullptr) m.list_mapped = 1;
        }
        if (ivf->quantizer != nullptr) {
            lk_index_memory quantizer{};
            add_memory(ivf->quantizer, ivf->quantizer->ntotal, quantizer);
            m.other_bytes += memory_total(quantizer);
        }
        m.other_bytes += table_bytes(ivf);
    } else if (auto *codes = dynamic_cast<const faiss::IndexFlatCodes *>(ix)) {
        m.vector_bytes += count * (int64_t)codes->code_size;
        m.other_bytes += table_bytes(codes);
    } else {
        try {
            m.vector_bytes += count * (int64_t)ix->sa_code_size();
        } catch (const std::exception &) {
            // An index type with no standalone codec: its vectors go uncounted.
        }
    }
}

}  // namespace lk
