// SegmentBuilder: the steps sealing (Sealing.swift), merging (Merging.swift) and compaction
// (Compaction.swift) share to make a sealed segment, written once:
//   - an empty index of the collection's type (from its trained template when it has one),
//     with its HNSW build effort, and room reserved when it is a graph that grows by insertion;
//   - rows added the way the collection's segments grow (the shim's insertion loop for graph
//     collections, FAISS's add otherwise), or, when a segment's rows are all at hand (a seal),
//     built at once: a compressed HNSW's graph linked by the shim's loop on the float rows, then
//     the rows encoded (buildRows);
//   - a new segment (and template) named from the manifest's counter, written durably and
//     opened, ready to be named in the manifest.
//   - publishing them: the manifest commit that names them, and the removal of what was
//     written when anything fails before that commit is done (`publishingNewFiles`).
// Invariants: segment files are `seg-NNNNNN`, templates `trained-NNNNNN`, numbered from one
// counter (`Manifest.nextSegment`), so no name is ever used twice in a collection. A seal,
// merge or compaction that fails leaves none of its files behind (the next start would remove
// them too, but until then they hold disk space, perhaps the space the failure lacked).
// Threads: the caller's (the sealer's, the merger's, compaction's); `writeSegment` under the
// collection's `manifestLock`, as every manifest edit.
import LookalikeIndex

extension Collection {
    /// An empty index of the collection's type: a copy of `template` (trained) or a new one,
    /// with the collection's efConstruction; a graph collection's gets room for `capacity`.
    func emptyIndex(template: FaissIndex?, capacity: Int) throws -> FaissIndex {
        let index = try template?.clone()
            ?? FaissIndex(spec: definition.index, dimension: definition.dimension, metric: definition.metric.faiss)
        if try index.info().kind == .hnsw {
            try index.setHNSW(efConstruction: efConstruction, efSearch: engine.options.maxEfSearch)
        }
        if usesGraph { try index.reserveGraph(capacity: capacity) }
        return index
    }

    /// Adds `count` prepared rows to an index from `emptyIndex`.
    func addRows(_ rows: UnsafePointer<Float>, count: Int, to index: FaissIndex) throws {
        if usesGraph {
            try index.insert(rows, count: count, threads: engine.options.buildThreads)
        } else {
            if engine.options.buildThreads > 0 { FaissIndex.setThreads(engine.options.buildThreads) }
            try index.add(rows, count: count)
        }
    }

    /// Fills an empty index from `emptyIndex` with all `count` rows of a segment in one call. A
    /// compressed HNSW (`buildsFromRows`) gets the graph the flat build gives on these float rows
    /// (the shim's insertion loop), then their codes: FAISS 1.7.3's own add would decode codes
    /// for every node-to-node distance of its neighbour heuristic (6x slower at 512-d,
    /// Docs/benchmarks.md). Other types: `addRows`.
    func buildRows(_ rows: UnsafePointer<Float>, count: Int, into index: FaissIndex) throws {
        guard buildsFromRows else { return try addRows(rows, count: count, to: index) }
        // The encoding is FAISS's OpenMP loop; the linking takes the thread count itself.
        if engine.options.buildThreads > 0 { FaissIndex.setThreads(engine.options.buildThreads) }
        try index.build(rows, count: count, threads: engine.options.buildThreads)
    }

    /// Names and writes `index` (holding `ids`, at least one, whose keys are `keys`) as a new
    /// sealed segment, advancing `manifest`'s counter; the files are durable on return
    /// (SegmentFiles). Returns the opened segment, its key table attached, and its manifest
    /// entry, for the caller to name in the manifest. Caller holds `manifestLock`.
    func writeSegment(_ index: FaissIndex, ids: [UInt64], keys: KeyTable,
                      manifest: inout Manifest) throws -> (SealedSegment, Manifest.Entry) {
        let name = Self.segmentName(manifest.nextSegment)
        manifest.nextSegment += 1
        try SegmentFiles.write(index: index, ids: ids, keys: keys, name: name, directory: segmentDirectory) {
            try engine.faults.check(.segmentWrite)
        }
        let segment = try SealedSegment(name: name, index: index, ids: ids, metric: definition.metric.faiss)
        segment.attach(keys: keys)
        return (segment, .init(name: name, firstId: ids.first!, lastId: ids.last!, count: ids.count))
    }

    /// Names and writes a trained empty index as the collection's template (in `manifest`).
    /// Caller holds `manifestLock`.
    func writeTemplate(_ template: FaissIndex, manifest: inout Manifest) throws {
        let name = Self.templateName(manifest.nextSegment)
        manifest.nextSegment += 1
        try SegmentFiles.write(index: template, ids: [], name: name, directory: segmentDirectory)
        manifest.template = name
    }

    /// Runs `body`, which writes new segment or template files (numbered from `manifest`'s
    /// counter) and commits a manifest naming them; when it throws, or returns nil (the
    /// collection was dropped meanwhile), removes every file it numbered. Caller holds
    /// `manifestLock`.
    func publishingNewFiles<T>(_ manifest: inout Manifest, _ body: (inout Manifest) throws -> T?) throws -> T? {
        let first = manifest.nextSegment
        var published: T?
        defer {
            if published == nil {
                for n in first..<max(first, manifest.nextSegment) {
                    SegmentFiles.remove(name: Self.segmentName(n), directory: segmentDirectory)
                    SegmentFiles.remove(name: Self.templateName(n), directory: segmentDirectory)
                }
            }
        }
        published = try body(&manifest)
        return published
    }

    static func segmentName(_ number: Int) -> String { String(format: "seg-%06d", number) }
    static func templateName(_ number: Int) -> String { String(format: "trained-%06d", number) }
}
