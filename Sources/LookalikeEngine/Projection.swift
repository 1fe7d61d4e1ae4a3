// Projection: VADD REDUCE's random projection, from the vectors a collection is given (of
// `projectionInputDimension`) to the vectors it stores and indexes (of its `dimension`).
//
// The matrix is Redis's (modules/vector-sets/vset.c, createProjectionMatrix): entry (i, j) is
// +1 or -1 by the parity of the set bits of i & j (rows of a Walsh-Hadamard matrix), scaled by
// 1/sqrt(input dimension). Redis chose it over Gaussian weights because it is deterministic (a
// replica makes the same one) and keeps distances better; here it also means Lookalike reduces a
// vector exactly as Redis does. It is stored with the collection all the same (meta key
// projection:<N>, float32 little-endian, row-major), as Redis keeps it in its RDB, so that no
// later change of how matrices are made can alter an existing set.
//
// Where it applies:
//   - writes: an upsert's vector of the input dimension is projected before it is checked and
//     stored, so LMDB holds the reduced vector (VEMB answers it, as Redis does) and recovery,
//     sealing and compaction never see the input dimension;
//   - queries (VSIM, VWITHIN, VPREDICT, VHISTORY ATTENTION): a vector of the input dimension is
//     projected; one of the reduced dimension is taken as already projected, as in Redis.
// Invariants: a collection has a projection iff its definition has projectionInputDimension,
// which is larger than its dimension; the matrix has dimension × input dimension entries.
// Threads: immutable; any thread.
import Foundation
import LookalikeIndex
import LookalikeStorage

public struct Projection: Sendable {
    public let inputDimension: Int
    public let outputDimension: Int
    /// `outputDimension` rows of `inputDimension` entries.
    let matrix: [Float]

    /// Matrix entries at most (64 MiB of floats): e.g. 4096 -> 4096, or 65536 -> 256.
    public static let maxEntries = 1 << 24


    /// Redis's matrix for these dimensions.
    init(inputDimension: Int, outputDimension: Int) {
        self.inputDimension = inputDimension
        self.outputDimension = outputDimension
        let scale = 1 / Float(inputDimension).squareRoot()
        var m = [Float](repeating: 0, count: inputDimension * outputDimension)
        for i in 0..<outputDimension {
            for j in 0..<inputDimension {
                m[i * inputDimension + j] = (i & j).nonzeroBitCount % 2 == 0 ? scale : -scale
            }
        }
        matrix = m
    }

    /// The matrix as stored for a collection; throws when it does not fit the definition.
    init(stored bytes: [UInt8], inputDimension: Int, outputDimension: Int) throws {
        guard bytes.count == inputDimension * outputDimension * 4 else {
            throw StorageError.corrupt("projection matrix has \(bytes.count) bytes, expected \(inputDimension) x \(outputDimension) floats")
        }
        self.inputDimension = inputDimension
        self.outputDimension = outputDimension
        matrix = bytes.withUnsafeBytes { raw in
            (0..<(raw.count / 4)).map {
                Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)))
            }
        }
    }

    /// The matrix for `definition`'s REDUCE, made afresh (before the collection stores one).
    static func of(_ definition: CollectionDefinition) -> Projection? {
        definition.projectionInputDimension.map { Projection(inputDimension: $0, outputDimension: definition.dimension) }
    }

    var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(matrix.count * 4)
        for x in matrix { withUnsafeBytes(of: x.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        return out
    }

    /// The reduced vector. Precondition: `v.count == inputDimension`.
    public func apply(_ v: [Float]) -> [Float] {
        precondition(v.count == inputDimension)
        var out = [Float](repeating: 0, count: outputDimension)
        matrix.withUnsafeBufferPointer { m in
            v.withUnsafeBufferPointer { x in
                out.withUnsafeMutableBufferPointer { y in
                    VectorMath.multiply(m.baseAddress!, rows: outputDimension, columns: inputDimension,
                                        x.baseAddress!, into: y.baseAddress!)
                }
            }
        }
        return out
    }

    /// Checks REDUCE's dimensions against the engine's limits.
    static func validate(inputDimension: Int, outputDimension: Int, limits: EngineOptions) throws {
        guard inputDimension > outputDimension else {
            throw EngineError.invalidDefinition("a projection must reduce: \(inputDimension) dimensions cannot be projected to \(outputDimension)")
        }
        guard inputDimension <= limits.maxDimension else {
            throw EngineError.invalidDefinition("dimension must be between 1 and \(limits.maxDimension), got \(inputDimension)")
        }
        guard inputDimension * outputDimension <= maxEntries else {
            throw EngineError.invalidDefinition(
                "a projection from \(inputDimension) to \(outputDimension) dimensions needs \(inputDimension * outputDimension) matrix entries, more than \(maxEntries): reduce to fewer dimensions")
        }
    }
}

extension Collection {
    /// The collection's stored matrix, read when it opens; nil without REDUCE.
    static func loadProjection(_ definition: CollectionDefinition, number: UInt32, engine: Engine) throws -> Projection? {
        guard let input = definition.projectionInputDimension else { return nil }
        return try engine.environment.read { txn in
            guard let bytes = try engine.meta.get(MetaLayout.projection(number), txn) else {
                throw StorageError.corrupt("collection '\(definition.name)' reduces dimensions but its projection matrix is missing")
            }
            return try Projection(stored: bytes, inputDimension: input, outputDimension: definition.dimension)
        }
    }

    /// A write as the collection takes it: an upsert's input vector projected.
    func projected(_ request: WriteRequest) throws -> WriteRequest {
        try Self.projected(request, projection, definition)
    }

    static func projected(_ request: WriteRequest, _ projection: Projection?, _ definition: CollectionDefinition) throws
        -> WriteRequest
    {
        guard let projection, case .upsert(let key, let vector, let attributes) = request else { return request }
        guard vector.count == projection.inputDimension else {
            guard vector.count == definition.dimension else { throw dimensionMismatch(projection, definition, vector.count) }
            return request  // already reduced (a tool writing stored vectors)
        }
        return .upsert(key: key, vector: projection.apply(vector), attributes: attributes)
    }

    /// A query vector as the index wants it: projected when the collection reduces dimensions
    /// and it has the input dimension, then prepared as every vector (unit length for cosine).
    func queryVector(_ v: [Float]) throws -> [Float] {
        guard let projection, v.count != definition.dimension else { return try preparedVector(v) }
        guard v.count == projection.inputDimension else { throw Self.dimensionMismatch(projection, definition, v.count) }
        return try preparedVector(projection.apply(v))
    }

    static func dimensionMismatch(_ p: Projection, _ d: CollectionDefinition, _ got: Int) -> EngineError {
        .invalidArgument("vector dimension mismatch: '\(d.name)' takes \(p.inputDimension)-dimensional vectors (projected to \(p.outputDimension)), got \(got)")
    }

    /// The REDUCE input dimension (VINFO's projection-input-dim), 0 without a projection.
    public var projectionInputDimension: Int { projection?.inputDimension ?? 0 }
}
