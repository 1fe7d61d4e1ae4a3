// VectorFile: the vector files people have, read by row without loading them whole.
//
//   .npy     NumPy array, float32 or float16, N × d, C order (version 1, 2 or 3 headers)
//   .fvecs   per row: int32 d, then d float32 (the TEXMEX / ann-benchmarks format)
//   raw      little-endian float32 rows, no header; the dimension comes from the caller
//   amazon   the Amazon product image-features file: per row a 10-byte ASIN, then 4096
//            float32 in the writer's native (x86: little-endian) order, no header
//
// The file is memory-mapped: a 57 GB Amazon file costs address space, not memory, and rows
// are decoded on demand. A file whose size does not fit its format is refused at open with
// the reason, before any row is read.
// Threads: immutable after init; rows may be read from any thread.
import Foundation

public enum VectorFormat: String, Sendable, CaseIterable {
    case npy, fvecs, raw, amazon

    /// The format a file name suggests, if any.
    public static func guess(path: String) -> VectorFormat? {
        let lower = path.lowercased()
        if lower.hasSuffix(".npy") { return .npy }
        if lower.hasSuffix(".fvecs") { return .fvecs }
        if lower.hasSuffix(".f32") || lower.hasSuffix(".raw") || lower.hasSuffix(".bin") { return .raw }
        return nil
    }
}

public struct FormatError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public final class VectorFile: @unchecked Sendable {
    public enum Element: Sendable { case float32, float16 }

    public let path: String
    public let format: VectorFormat
    public let dimension: Int
    /// The largest dimension a file may claim (what is checked before sizes are multiplied).
    public static let maxDimension = 1 << 20
    public let count: Int
    public let element: Element
    private let data: Data
    private let headerBytes: Int
    private let rowBytes: Int
    /// Bytes before the vector inside each row (the Amazon ASIN, the fvecs length).
    private let rowPrefix: Int

    /// The Amazon file's fixed shape.
    public static let amazonKeyBytes = 10
    public static let amazonDimension = 4096

    public init(path: String, format: VectorFormat? = nil, dimension: Int? = nil) throws {
        guard let format = format ?? VectorFormat.guess(path: path) else {
            throw FormatError("cannot tell the format of \(path) from its name: pass --format npy|fvecs|raw|amazon")
        }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw FormatError("cannot read \(path): \(error.localizedDescription)")
        }
        self.path = path
        self.format = format
        self.data = data
        switch format {
        case .npy:
            let header = try NPYHeader(data)
            guard dimension == nil || dimension == header.columns else {
                throw FormatError("\(path) holds \(header.columns)-d vectors, not \(dimension!)")
            }
            // Checked before any product: a hostile shape must be refused, not overflow (fuzzed).
            guard header.columns > 0, header.columns <= Self.maxDimension else {
                throw FormatError("\(path) does not hold a plausible dimension (\(header.columns) columns)")
            }
            element = header.element
            self.dimension = header.columns
            headerBytes = header.dataOffset
            rowPrefix = 0
            rowBytes = header.columns * (header.element == .float32 ? 4 : 2)
            let (promised, overflow) = header.rows.multipliedReportingOverflow(by: rowBytes)
            guard header.rows >= 0, !overflow, data.count - headerBytes >= promised else {
                throw FormatError("\(path) is cut short: its header promises \(header.rows) rows of \(header.columns)")
            }
            count = header.rows
        case .fvecs:
            guard data.count >= 4 else { throw FormatError("\(path) is empty: an .fvecs file starts with a row's dimension") }
            let d = Int(data.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 0, as: Int32.self) })
            guard d > 0, d <= Self.maxDimension else { throw FormatError("\(path) does not start with a plausible dimension (\(d))") }
            guard dimension == nil || dimension == d else { throw FormatError("\(path) holds \(d)-d vectors, not \(dimension!)") }
            self.dimension = d
            element = .float32
            headerBytes = 0
            rowPrefix = 4
            rowBytes = 4 + 4 * d
            guard data.count % rowBytes == 0 else {
                throw FormatError("\(path): \(data.count) bytes is not a whole number of \(d)-d .fvecs rows")
            }
            count = data.count / rowBytes
        case .raw:
            guard let d = dimension, d > 0 else { throw FormatError("raw float32 files need --dim") }
            guard d <= Self.maxDimension else { throw FormatError("--dim \(d) is larger than \(Self.maxDimension)") }
            self.dimension = d
            element = .float32
            headerBytes = 0
            rowPrefix = 0
            rowBytes = 4 * d
            guard data.count % rowBytes == 0 else {
                throw FormatError("\(path): \(data.count) bytes is not a whole number of \(d)-d float32 rows")
            }
            count = data.count / rowBytes
        case .amazon:
            let d = dimension ?? Self.amazonDimension
            guard d > 0, d <= Self.maxDimension else { throw FormatError("--dim \(d) must be 1 to \(Self.maxDimension)") }
            self.dimension = d
            element = .float32
            headerBytes = 0
            rowPrefix = Self.amazonKeyBytes
            rowBytes = Self.amazonKeyBytes + 4 * d
            guard data.count % rowBytes == 0 else {
                throw FormatError("\(path): \(data.count) bytes is not a whole number of Amazon records (10-byte ASIN + \(d) float32)")
            }
            count = data.count / rowBytes
        }
    }

    /// The key stored with row i (the ASIN in Amazon files), nil for formats without keys.
    public func key(at row: Int) -> String? {
        guard format == .amazon else { return nil }
        let start = headerBytes + row * rowBytes
        let bytes = data[(data.startIndex + start)..<(data.startIndex + start + Self.amazonKeyBytes)]
        return String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespaces.union(.controlCharacters))
    }

    /// Row i as float32. For .fvecs, a row whose own length field differs is an error.
    public func vector(at row: Int) throws -> [Float] {
        precondition(row >= 0 && row < count)
        let start = headerBytes + row * rowBytes
        return try data.withUnsafeBytes { raw -> [Float] in
            if format == .fvecs {
                let d = Int(raw.loadUnaligned(fromByteOffset: start, as: Int32.self))
                guard d == dimension else { throw FormatError("row \(row) says dimension \(d), the file's first row \(dimension)") }
            }
            let base = start + rowPrefix
            switch element {
            case .float32:
                var out = [Float](repeating: 0, count: dimension)
                out.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[base..<(base + 4 * dimension)])) }
                if UInt32(littleEndian: 1) != 1 { for i in out.indices { out[i] = Float(bitPattern: UInt32(littleEndian: out[i].bitPattern)) } }
                return out
            case .float16:
                return (0..<dimension).map { Float(Float16(bitPattern: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: base + 2 * $0, as: UInt16.self)))) }
            }
        }
    }
}

/// The header of a .npy file: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
struct NPYHeader {
    let rows: Int
    let columns: Int
    let element: VectorFile.Element
    let dataOffset: Int

    init(_ data: Data) throws {
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY
        guard data.count >= 10, Array(data.prefix(6)) == magic else { throw FormatError("not a .npy file (no \\x93NUMPY magic)") }
        let major = data[data.startIndex + 6]
        let length: Int
        let start: Int
        if major == 1 {
            length = Int(data[data.startIndex + 8]) | Int(data[data.startIndex + 9]) << 8
            start = 10
        } else {
            guard data.count >= 12 else { throw FormatError("truncated .npy header") }
            length = (0..<4).reduce(0) { $0 | Int(data[data.startIndex + 8 + $1]) << (8 * $1) }
            start = 12
        }
        guard data.count >= start + length else { throw FormatError("truncated .npy header") }
        let text = String(decoding: data[(data.startIndex + start)..<(data.startIndex + start + length)], as: UTF8.self)
        guard let descr = Self.field("descr", text) else { throw FormatError(".npy header has no descr") }
        switch descr.trimmingCharacters(in: CharacterSet(charactersIn: "'\" ")) {
        case "<f4", "=f4", "f4": element = .float32
        case "<f2", "=f2", "f2": element = .float16
        default: throw FormatError(".npy dtype \(descr) is not supported: save float32 or float16 (little-endian)")
        }
        if let order = Self.field("fortran_order", text), order.contains("True") {
            throw FormatError(".npy file is in Fortran order: save it with numpy.ascontiguousarray first")
        }
        guard let shape = Self.field("shape", text) else { throw FormatError(".npy header has no shape") }
        let dims = shape.trimmingCharacters(in: CharacterSet(charactersIn: "() "))
            .split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard dims.count == 2, dims[0] >= 0, dims[1] > 0 else {
            throw FormatError(".npy shape \(shape) is not N × d")
        }
        rows = dims[0]
        columns = dims[1]
        dataOffset = start + length
    }

    /// The raw text of one key's value in the header's Python dict literal.
    static func field(_ name: String, _ header: String) -> String? {
        guard let key = header.range(of: "'\(name)'") ?? header.range(of: "\"\(name)\"") else { return nil }
        var rest = header[key.upperBound...].drop { $0 == " " || $0 == ":" }
        if rest.first == "(" {
            guard let close = rest.firstIndex(of: ")") else { return nil }
            return String(rest[...close])
        }
        rest = rest.prefix { $0 != "," && $0 != "}" }
        return String(rest)
    }
}

extension VectorFile {
    /// Writes `rows` × `dimension` float32 values (row-major) as a version-1 .npy file, the
    /// format numpy.load reads: the benchmarks hand their vectors to Python peers this way.
    public static func writeNPY(_ values: [Float], rows: Int, dimension: Int, to path: String) throws {
        precondition(values.count == rows * dimension, "writeNPY: \(values.count) values are not \(rows) × \(dimension)")
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(rows), \(dimension)), }"
        // The header, with its 10-byte preamble and closing newline, fills a multiple of 64 bytes.
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xff), UInt8(header.utf8.count >> 8)]
        bytes += Array(header.utf8)
        var data = Data(bytes)
        values.withUnsafeBufferPointer { data.append(UnsafeBufferPointer(start: UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: UInt8.self), count: $0.count * 4)) }
        do { try data.write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw FormatError("cannot write \(path): \(error.localizedDescription)")
        }
    }
}
