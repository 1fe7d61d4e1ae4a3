// Names: byte strings carried as Swift Strings, losslessly.
//
// Redis keys, element names and attributes are byte strings; Swift's String holds only valid
// Unicode, and decoding bytes with replacement made "\xff" and "\xfe" one name (issue 17).
// The engine is keyed by String throughout, so the protocol edge maps bytes to a String with an
// escape that is undone exactly on the way out:
//   - bytes that are valid UTF-8 stay as they are (every name a user types, and every name
//     stored before this mapping existed, so data folders need no migration);
//   - each byte of an invalid sequence becomes the scalar U+10FF00 + byte (bytes 0x80–0xFF map
//     to U+10FF80–U+10FFFF, the end of a private-use plane);
//   - so that the map stays one-to-one, a valid scalar that itself lies in U+10FF80–U+10FFFF
//     is escaped byte by byte too.
// Invariant: `bytes(string(b)) == b` for every byte string `b`; names that differ in bytes
// differ as Strings. LMDB stores the String's UTF-8: each escaped byte takes 4 bytes there,
// which counts toward the name-length limit.
// Threads: pure functions.
public enum Names {
    static let escapeBase: UInt32 = 0x10FF00
    static let escapedRange: ClosedRange<UInt32> = 0x10FF80...0x10FFFF

    /// The String that carries these bytes.
    public static func string<C: Swift.Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        if !mayNeedEscape(bytes), let s = String(validating: bytes, as: UTF8.self) { return s }
        return escaped(Array(bytes))
    }

    /// The bytes a String from `string(_:)` carries (any other String: its UTF-8).
    public static func bytes(_ s: String) -> [UInt8] {
        guard s.unicodeScalars.contains(where: { escapedRange.contains($0.value) }) else {
            return Array(s.utf8)
        }
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count)
        for scalar in s.unicodeScalars {
            if escapedRange.contains(scalar.value) {
                out.append(UInt8(scalar.value - escapeBase))
            } else {
                out.append(contentsOf: String(scalar).utf8)
            }
        }
        return out
    }

    /// True unless the bytes are plainly free of the escape range: its scalars all start with
    /// the UTF-8 bytes F4 8F BE or F4 8F BF.
    static func mayNeedEscape<C: Swift.Collection>(_ bytes: C) -> Bool where C.Element == UInt8 {
        bytes.contains(0xF4)
    }

    /// Decodes valid UTF-8 sequences as themselves and escapes every other byte, and every
    /// byte of a scalar in the escape range.
    static func escaped(_ b: [UInt8]) -> String {
        var scalars = String.UnicodeScalarView()
        var i = 0
        while i < b.count {
            let length = sequenceLength(b, at: i)
            if length > 0, let s = String(validating: b[i..<(i + length)], as: UTF8.self),
               let scalar = s.unicodeScalars.first, !escapedRange.contains(scalar.value) {
                scalars.append(scalar)
                i += length
            } else {
                let count = max(length, 1)
                for byte in b[i..<(i + count)] { scalars.append(escape(byte)) }
                i += count
            }
        }
        return String(scalars)
    }

    static func escape(_ byte: UInt8) -> Unicode.Scalar {
        byte < 0x80 ? Unicode.Scalar(byte) : Unicode.Scalar(escapeBase + UInt32(byte))!
    }

    /// The length of the UTF-8 sequence starting at `i` if its lead and continuation bytes are
    /// well formed (validation of the scalar itself is left to the decoder); 0 when they are not.
    static func sequenceLength(_ b: [UInt8], at i: Int) -> Int {
        let lead = b[i]
        let length: Int
        switch lead {
        case 0x00...0x7F: return 1
        case 0xC2...0xDF: length = 2
        case 0xE0...0xEF: length = 3
        case 0xF0...0xF4: length = 4
        default: return 0
        }
        guard i + length <= b.count else { return 0 }
        for j in 1..<length where b[i + j] & 0xC0 != 0x80 { return 0 }
        return length
    }
}
