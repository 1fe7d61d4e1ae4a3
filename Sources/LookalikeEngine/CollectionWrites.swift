// CollectionWrites: how a write enters a collection — checked and prepared on the caller's
// thread (key, attributes, vector: a bad write fails here and changes nothing), then queued to
// the group commit (WriteQueue), whose completion answers the caller.
// Threads: any thread; nothing here touches the segments or LMDB.
import Foundation
import Logging
import LookalikeIndex
import LookalikeStorage
import Synchronization

extension Collection {
    // MARK: - Validation (any thread, before a write is queued)

    func prepare(_ request: WriteRequest) throws -> [Float]? {
        try Self.prepare(request, definition: definition, options: engine.options)
    }

    /// Checks a write against a definition, with no collection needed: a VADD that creates its
    /// collection is checked before the collection exists, so a refused write creates nothing.
    /// Returns the vector as the index stores it, for upserts.
    public static func prepare(_ request: WriteRequest, definition: CollectionDefinition,
                               options: EngineOptions) throws -> [Float]? {
        switch request {
        case .upsert(let key, let vector, let attributes):
            try validateKey(key, options)
            if case .set(let a) = attributes { try validateAttributes(a, options) }
            return try preparedVector(vector, definition)
        case .remove(let key):
            try validateKey(key, options)
            return nil
        case .setAttributes(let key, let attributes):
            try validateKey(key, options)
            try validateAttributes(attributes, options)
            return nil
        case .dropCollection:
            return nil
        }
    }

    static func validateKey(_ key: String, _ options: EngineOptions) throws {
        guard !key.isEmpty else { throw EngineError.emptyKey }
        guard key.utf8.count <= min(options.maxKeyBytes, 511) else {
            throw EngineError.keyTooLong(max: min(options.maxKeyBytes, 511))
        }
    }

    /// Attributes are stored byte for byte as given, as Redis does: a string that is not a JSON
    /// object is kept (and returned by VGETATTR), but no FILTER matches it and no attribute
    /// index lists it.
    static func validateAttributes(_ json: String?, _ options: EngineOptions) throws {
        guard let json, !json.isEmpty else { return }
        guard json.utf8.count <= options.maxAttributeBytes else {
            throw EngineError.attributesTooLarge(max: options.maxAttributeBytes)
        }
    }

    /// Checks a vector and returns it as the index stores it (unit length for cosine).
    /// A zero vector is accepted, as Redis does (it has no direction: its cosine with anything
    /// is 0); `allowZero: false` refuses it where it means a mistake (a history that cancels out).
    func preparedVector(_ vector: [Float], allowZero: Bool = true) throws -> [Float] {
        try Self.preparedVector(vector, definition, allowZero: allowZero)
    }

    static func preparedVector(_ vector: [Float], _ definition: CollectionDefinition, allowZero: Bool = true) throws -> [Float] {
        guard vector.count == definition.dimension else {
            throw EngineError.wrongDimension(expected: definition.dimension, got: vector.count)
        }
        guard vector.withUnsafeBufferPointer(VectorMath.allFinite) else { throw EngineError.notFinite }
        guard definition.metric == .cosine else { return vector }
        guard let unit = VectorMath.normalized(vector) else {
            if allowZero { return vector }
            throw EngineError.zeroVector
        }
        return unit
    }

    // MARK: - Writes (any thread)

    /// Queues a write; `completion` runs once it is durable and visible, or failed.
    public func submit(_ given: WriteRequest,
                       completion: @escaping @Sendable (Result<WriteOutcome, EngineError>) -> Void) {
        submit(given, replicated: nil, completion: completion)
    }

    /// `replicated`: on a replica, the primary's stream entry of this write (ReplicaApply).
    func submit(_ given: WriteRequest, replicated: [UInt8]?,
                completion: @escaping @Sendable (Result<WriteOutcome, EngineError>) -> Void) {
        let request: WriteRequest
        let prepared: [Float]?
        do {
            request = try projected(given)
            prepared = try prepare(request)
        } catch {
            completion(.failure(EngineError.wrap(error)))
            return
        }
        engine.writeQueue.submit(PreparedWrite(collection: self, request: request, preparedVector: prepared,
                                               replicated: replicated, completion: completion))
    }

    public func write(_ request: WriteRequest) async throws -> WriteOutcome {
        try await withCheckedThrowingContinuation { cont in
            submit(request) { cont.resume(with: $0.mapError { $0 as Error }) }
        }
    }

    /// Adds or replaces an item. Returns `.added` for a new key, `.updated` otherwise.
    @discardableResult
    public func upsert(key: String, vector: [Float], attributes: AttributeUpdate = .keep)
        async throws -> WriteOutcome
    {
        try await write(.upsert(key: key, vector: vector, attributes: attributes))
    }

    /// Removes an item; false if there was none.
    @discardableResult
    public func remove(key: String) async throws -> Bool {
        try await write(.remove(key: key)) == .removed
    }

    /// Replaces an item's attributes (nil or "" removes them); false if the key does not exist.
    @discardableResult
    public func setAttributes(key: String, _ json: String?) async throws -> Bool {
        try await write(.setAttributes(key: key, attributes: json)) != .notFound
    }

    /// Many writes at once (bulk loads); results in request order.
    public func write(batch: [WriteRequest]) async -> [Result<WriteOutcome, EngineError>] {
        guard !batch.isEmpty else { return [] }
        // One continuation per write would be costly for millions; a shared collector is not.
        let collector = BatchCollector(count: batch.count)
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            collector.onComplete = { done.resume() }
            for (i, r) in batch.enumerated() { submit(r) { collector.set(i, $0) } }
        }
        return collector.results
    }
}

/// Collects the results of a batch of writes completed on the commit thread.
final class BatchCollector: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var results: [Result<WriteOutcome, EngineError>]
    private var remaining: Int
    var onComplete: (() -> Void)?

    init(count: Int) {
        results = Array(repeating: .failure(.closed), count: count)
        remaining = count
    }

    func set(_ i: Int, _ r: Result<WriteOutcome, EngineError>) {
        lock.lock()
        results[i] = r
        remaining -= 1
        let done = remaining == 0
        lock.unlock()
        if done { onComplete?() }
    }
}
