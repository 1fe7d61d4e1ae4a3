// EngineError: every way the engine says no. Messages name what was wrong and what to do; the
// protocol layer sends them to clients as they are.
// Threads: values, made and read on any thread.
import LookalikeIndex
import LookalikeStorage

public enum EngineError: Error, CustomStringConvertible, Equatable {
    case wrongDimension(expected: Int, got: Int)
    case notFinite
    case zeroVector
    case emptyKey
    case keyTooLong(max: Int)
    case attributesTooLarge(max: Int)
    case invalidJSON(String)
    case unknownCollection(String)
    case collectionExists(String)
    case invalidDefinition(String)
    case indexSpecRejected(spec: String, reason: String)
    case keyNotFound(String)
    case invalidArgument(String)
    case storage(String)
    case index(String)
    case sealFailed(collection: String, reason: String)
    case closed

    public var description: String {
        switch self {
        case .wrongDimension(let e, let g):
            return "vector dimension mismatch: the collection has \(e) dimensions, got \(g)"
        case .notFinite: return "the vector holds NaN or infinity: send finite numbers only"
        case .zeroVector: return "a zero vector has no direction for cosine: send a non-zero vector"
        case .emptyKey: return "the element name is empty"
        case .keyTooLong(let m): return "the element name is longer than \(m) bytes"
        case .attributesTooLarge(let m): return "the attributes are longer than \(m) bytes"
        case .invalidJSON(let why): return "attributes must be a JSON object: \(why)"
        case .unknownCollection(let n): return "no collection named '\(n)'"
        case .collectionExists(let n): return "a collection named '\(n)' already exists"
        case .invalidDefinition(let why): return "invalid collection definition: \(why)"
        case .indexSpecRejected(let s, let r): return "FAISS rejects the index spec \"\(s)\": \(r)"
        case .keyNotFound(let k): return "no element named '\(k)'"
        case .invalidArgument(let why): return why
        case .storage(let m): return m
        case .index(let m): return m
        case .sealFailed(let c, let r):
            return "indexing '\(c)' failed: \(r); its items are stored and searchable (exact), and indexing is retried later"
        case .closed: return "the engine is shutting down"
        }
    }

    /// Wraps lower layers' errors so callers see one error type.
    static func wrap(_ error: Error) -> EngineError {
        switch error {
        case let e as EngineError: return e
        case let e as StorageError: return .storage(e.description)
        case let e as IndexError: return .index(e.description)
        default: return .storage("\(error)")
        }
    }
}
