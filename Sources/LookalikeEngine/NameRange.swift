// NameRange: element names in byte order between two bounds (VRANGE), read by walking the
// keys table's LMDB cursor from the start bound: the cost is what is returned (plus the views
// passed on the way), not the size of the collection.
//
// Order: LMDB compares keys as memcmp does (a name sorts before its extensions), which is
// Redis's order for every name that is valid UTF-8. A name holding other bytes is stored with
// those bytes escaped (Names.swift), so it sorts as stored: after every valid name below byte
// 0xF4. Bounds are compared in the same stored form, so a range is always one interval of the
// walk and paging with "(last" misses nothing.
// Views (item + U+001F + view name: Views.swift) are not elements and are skipped.
// Threads: any thread; one LMDB read transaction per call, so a call sees one snapshot.
import LookalikeStorage

/// One end of a name range: `.unbounded` is Redis's "-" as a start and "+" as an end.
public enum NameBound: Sendable, Equatable {
    case unbounded
    case inclusive(String)
    case exclusive(String)
}

extension Collection {
    /// Names from `start` to `end` in byte order, at most `limit` of them (nil: all).
    public func names(from start: NameBound, to end: NameBound, limit: Int?) throws -> [String] {
        if let limit, limit <= 0 { return [] }
        let from: [UInt8]?
        var skip: [UInt8]?  // an exclusive start: the one key equal to it is left out
        switch start {
        case .unbounded: from = nil
        case .inclusive(let s): from = Array(s.utf8)
        case .exclusive(let s): from = Array(s.utf8); skip = from
        }
        return try wrapped {
            try engine.environment.read { txn in
                var out: [String] = []
                try store.forEachKey(from: from, txn) { key in
                    if let s = skip {
                        skip = nil
                        if key.elementsEqual(s) { return true }
                    }
                    guard Self.isBelow(key, end) else { return false }
                    if key.contains(Views.separatorByte) { return true }
                    out.append(String(decoding: key, as: UTF8.self))
                    return limit.map { out.count < $0 } ?? true
                }
                return out
            }
        }
    }

    /// True while a key has not passed the end bound.
    private static func isBelow(_ key: UnsafeRawBufferPointer, _ end: NameBound) -> Bool {
        switch end {
        case .unbounded: return true
        case .inclusive(let e): return !e.utf8.lexicographicallyPrecedes(key)
        case .exclusive(let e): return key.lexicographicallyPrecedes(e.utf8)
        }
    }
}
