// ReplicaApply: a replica applies its primary's stream entries, in stream order.
//
// Writes go through the same group commit as clients' writes (WriteQueue), each carrying the
// primary's bytes, so the replica records exactly those bytes in its own stream and its offset
// moves with the primary's (ReplicationLog). A creation waits for the writes before it.
// Invariant: when `apply` returns, every entry is committed and visible, and the replica's
// offset is the primary's offset after the last entry; any entry that does not apply (the
// replica's data is not the primary's) throws, and the caller asks for a full sync.
// Threads: the replica link's thread; it blocks until the entries are committed.
import Dispatch
import Foundation
import Synchronization

extension Engine {
    /// Applies entries (decoded, with their bytes) taken from the primary's stream.
    public func applyReplicated(_ entries: [(entry: StreamEntry, bytes: [UInt8])]) throws {
        let group = DispatchGroup()
        let failure = Mutex<EngineError?>(nil)
        func waitForWrites() throws {
            group.wait()
            if let e = failure.withLock({ $0 }) { throw e }
        }
        for (entry, bytes) in entries {
            switch entry {
            case .create(let definition):
                try waitForWrites()
                guard collection(definition.name) == nil else {
                    throw EngineError.storage("the replica already has a collection '\(definition.name)' the primary creates now: a full sync follows")
                }
                try createCollection(definition, replicated: bytes)
            case .write(let name, let request):
                guard let c = collection(name) else {
                    try waitForWrites()
                    throw EngineError.unknownCollection(name)
                }
                group.enter()
                c.submit(request, replicated: bytes) { result in
                    if case .failure(let e) = result { failure.withLock { $0 = $0 ?? e } }
                    group.leave()
                }
            }
        }
        try waitForWrites()
    }
}
