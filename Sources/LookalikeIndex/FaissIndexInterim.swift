// INTERIM (deleted when the shim's insertion loop lands): FAISS's own add, not safe against
// concurrent searches. Lets the engine's graph lifecycle build while the C++ side is written.
import CFaiss

extension FaissIndex {
    public func reserveGraph(capacity: Int) throws {}
    public func insert(_ vectors: UnsafePointer<Float>, count: Int, threads: Int) throws {
        if threads > 0 { FaissIndex.setThreads(threads) }
        try add(vectors, count: count)
    }
    public static func setBuildNice(_ nice: Int) {}
}
