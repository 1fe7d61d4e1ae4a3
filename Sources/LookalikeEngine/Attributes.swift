// Attributes: an element's attributes JSON, parsed once into typed values. The engine is the
// only layer that parses it: the commit thread extracts the indexed values for the attribute
// tables from it (CollectionCommit), a FILTER's check reads its fields (FilterExpression), and
// CATEGORY votes, cascades and rankings read one attribute. Storage keeps the JSON text byte
// for byte and is handed the indexed values already extracted (`indexedValues`).
//
// Invariants: `json` is the text as given; `fields` are its first-level keys when it is a JSON
// object, else nil (text that is not an object is stored, matches no FILTER, not even one
// without selectors, and is in no attribute table). JSON booleans stay booleans: the index spells them "true" / "false", the
// filter language reads them as 1 and 0. Numbers are doubles (as both always read them).
// Threads: an immutable value, any thread.
import Foundation
import LookalikeStorage
import Synchronization

public struct Attributes: Sendable {
    public enum Scalar: Sendable, Equatable {
        case string(String)
        case number(Double)
        case bool(Bool)
    }

    public enum Value: Sendable, Equatable {
        case scalar(Scalar)
        /// An array; nil for an element that is no scalar (an object, an array, null).
        case list([Scalar?])
        /// null or an object: no filter reads it and no attribute table lists it.
        case other
    }

    /// The text as given (what storage keeps and VGETATTR returns).
    public let json: String
    let fields: [String: Value]?

    /// Whether the text is a JSON object (only then does any FILTER match it).
    public var isObject: Bool { fields != nil }

    public init(json: String) {
        self.json = json
        fields = Self.parse(json)
    }

    /// Nil for no attributes (nil or empty text).
    public init?(_ json: String?) {
        guard let json, !json.isEmpty else { return nil }
        self.init(json: json)
    }

    public subscript(name: String) -> Value? { fields?[name] }

    // MARK: Index values

    /// The texts `name` is indexed under: a string as it is, a number or boolean as its text,
    /// or each scalar element of an array ("categories": ["Home", "Kitchen"]); sorted, unique.
    /// A string that reads as a number is listed under that number's text too ("5.0" under
    /// "5"), since the filter language finds it equal to the number. Every text is indexed:
    /// the empty one and those over LMDB's key limit under keys of their own (CollectionStore
    /// `tableKey`), so a FILTER's member set never lacks a match.
    public func indexedTexts(_ name: String) -> [String] {
        let scalars: [Scalar]
        switch self[name] {
        case .scalar(let s): scalars = [s]
        case .list(let items): scalars = items.compactMap { $0 }
        case .other, nil: return []
        }
        var texts = Set(scalars.map(Self.text))
        for case .string(let s) in scalars {
            if let n = Double(s), !n.isNaN { texts.insert(Self.numberText(n)) }
        }
        return texts.sorted()
    }

    /// The attribute-table entries of these attributes, for the indexed ones present.
    public func indexedValues(_ indexed: [String]) -> IndexedValues {
        var out: IndexedValues = []
        for name in indexed {
            for text in indexedTexts(name) { out.insert(IndexedValue(attribute: name, value: text)) }
        }
        return out
    }

    /// The text an attribute table holds a scalar under (FilterExpression's planner matches
    /// literals against it): numbers as integers when whole, booleans as true / false.
    static func text(_ s: Scalar) -> String {
        switch s {
        case .string(let t): return t
        case .number(let n): return numberText(n)
        case .bool(let b): return b ? "true" : "false"
        }
    }

    static func numberText(_ n: Double) -> String {
        if let i = Int64(exactly: n) { return String(i) }
        return String(n)
    }

    /// A numeric attribute's value: a finite number, or a string holding one (rankings).
    public func number(_ name: String) -> Double? {
        switch self[name] {
        case .scalar(.number(let n)): return n.isFinite ? n : nil
        case .scalar(.string(let s)): return Double(s).flatMap { $0.isFinite ? $0 : nil }
        default: return nil
        }
    }

    // MARK: Parsing

    private static func parse(_ json: String) -> [String: Value]? {
        parses.add(1, ordering: .relaxed)
        guard let object = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any] else { return nil }
        return object.mapValues { raw in
            if let list = raw as? [Any] { return .list(list.map(scalar)) }
            return scalar(raw).map(Value.scalar) ?? .other
        }
    }

    private static func scalar(_ raw: Any) -> Scalar? {
        switch raw {
        case let s as String: return .string(s)
        case let n as NSNumber:
            // Foundation gives JSON booleans as NSNumber of objCType "c" (a C char).
            if String(cString: n.objCType) == "c" { return .bool(n.boolValue) }
            return .number(n.doubleValue)
        default: return nil
        }
    }

    /// Attributes parsed since the process started (tests: what a search parsed).
    static let parses = Atomic<Int>(0)
}
