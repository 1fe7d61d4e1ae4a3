// CollectionDefinition: what a collection is, as stored in LMDB and as written in Indexes/*.json.
// Threads: value type.
import Foundation
import LookalikeIndex

public enum Metric: String, Codable, Sendable, CaseIterable {
    /// Cosine similarity: vectors are normalised and compared by inner product.
    case cosine
    /// Euclidean distance.
    case l2
    /// Raw inner product (vectors are not normalised).
    case ip

    var faiss: FaissMetric { self == .l2 ? .l2 : .innerProduct }
}

public struct CollectionDefinition: Codable, Sendable, Equatable {
    public var name: String
    public var dimension: Int
    public var metric: Metric
    /// A FAISS factory string: "Flat", "HNSW32", "IVF1024,Flat", "IVF4096,SQ8", "IVF1024,PQ32"...
    public var index: String
    /// Attributes with an LMDB index table (fast filters and counts).
    public var attributes: [String]
    /// Default per-query effort; nil picks from the index (HNSW efSearch 64; IVF nlist/16, at least 64: Collection.defaultNprobe).
    public var efSearch: Int?
    public var nprobe: Int?
    /// HNSW build effort (FAISS default 40).
    public var efConstruction: Int?
    /// Items in the mutable exact segment before it is sealed into the index type; nil uses
    /// the engine's default.
    public var sealThreshold: Int?
    /// REDUCE: the dimension of the vectors given, which a random projection stored with the
    /// collection reduces to `dimension` (Projection.swift); nil for a collection without one.
    public var projectionInputDimension: Int?
    /// Re-rank COUNT × this many candidates with the exact vectors (Rescoring.swift); 0 = off;
    /// nil = on (×4) for compressed HNSW specs (HNSWn,SQ8, HNSWn,SQfp16), off for the others.
    public var rescore: Int?

    public static let defaultAttributes = ["category", "author"]

    public init(name: String, dimension: Int, metric: Metric = .cosine, index: String = "HNSW32",
                attributes: [String] = CollectionDefinition.defaultAttributes,
                efSearch: Int? = nil, nprobe: Int? = nil, efConstruction: Int? = nil,
                sealThreshold: Int? = nil, projectionInputDimension: Int? = nil, rescore: Int? = nil) {
        self.name = name
        self.dimension = dimension
        self.metric = metric
        self.index = index
        self.attributes = attributes
        self.efSearch = efSearch
        self.nprobe = nprobe
        self.efConstruction = efConstruction
        self.sealThreshold = sealThreshold
        self.projectionInputDimension = projectionInputDimension
        self.rescore = rescore
    }

    enum CodingKeys: String, CodingKey {
        case name, dimension, metric, index, attributes, efSearch, nprobe, efConstruction, sealThreshold
        case projectionInputDimension, rescore
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        dimension = try c.decode(Int.self, forKey: .dimension)
        metric = try c.decodeIfPresent(Metric.self, forKey: .metric) ?? .cosine
        index = try c.decodeIfPresent(String.self, forKey: .index) ?? "HNSW32"
        attributes = try c.decodeIfPresent([String].self, forKey: .attributes)
            ?? Self.defaultAttributes
        efSearch = try c.decodeIfPresent(Int.self, forKey: .efSearch)
        nprobe = try c.decodeIfPresent(Int.self, forKey: .nprobe)
        efConstruction = try c.decodeIfPresent(Int.self, forKey: .efConstruction)
        sealThreshold = try c.decodeIfPresent(Int.self, forKey: .sealThreshold)
        projectionInputDimension = try c.decodeIfPresent(Int.self, forKey: .projectionInputDimension)
        rescore = try c.decodeIfPresent(Int.self, forKey: .rescore)
    }

    /// Reads a definition from a JSON file (Indexes/*.json).
    public static func load(path: String) throws -> CollectionDefinition {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw EngineError.invalidDefinition("cannot read \(path): \(error.localizedDescription)")
        }
        do { return try JSONDecoder().decode(CollectionDefinition.self, from: data) } catch {
            throw EngineError.invalidDefinition("\(path) is not a valid collection definition: \(error)")
        }
    }

    /// Everything `createCollection` checks, FAISS's verdict on the index spec included, with no
    /// engine and no data folder: the tools refuse a bad definition before they create either.
    public func check(limits: EngineOptions = EngineOptions()) throws {
        try validate(limits: limits)
        _ = try Collection.probe(self)
    }

    /// Checks everything but the index spec (which FAISS checks when the collection is made).
    func validate(limits: EngineOptions) throws {
        guard !name.isEmpty, name.utf8.count <= limits.maxKeyBytes else {
            throw EngineError.invalidDefinition(
                "a collection name must have 1 to \(limits.maxKeyBytes) bytes")
        }
        guard dimension >= 1, dimension <= limits.maxDimension else {
            throw EngineError.invalidDefinition(
                "dimension must be between 1 and \(limits.maxDimension), got \(dimension)")
        }
        guard !index.uppercased().contains("IDMAP") else {
            throw EngineError.invalidDefinition(
                "index spec \"\(index)\": leave IDMap out; Lookalike maps ids itself")
        }
        for a in attributes where a.isEmpty || a.utf8.count > 100 || a.contains("/") {
            throw EngineError.invalidDefinition("attribute name \"\(a)\" must have 1 to 100 bytes and no '/'")
        }
        if let s = sealThreshold, s < 1 { throw EngineError.invalidDefinition("sealThreshold must be positive") }
        if let e = efSearch, e < 1 { throw EngineError.invalidDefinition("efSearch must be positive") }
        if let n = nprobe, n < 1 { throw EngineError.invalidDefinition("nprobe must be positive") }
        if let r = rescore, r < 0 || r > Collection.maxOversampling {
            throw EngineError.invalidDefinition("rescore must be from 0 (off) to \(Collection.maxOversampling)")
        }
        if let p = projectionInputDimension { try Projection.validate(inputDimension: p, outputDimension: dimension, limits: limits) }
    }
}
