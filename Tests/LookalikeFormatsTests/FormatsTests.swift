// Input formats for the tools: Python literals as Amazon's metadata writes them, .npy headers,
// files that must be refused with a reason, and metadata record counts.
import Foundation
import LookalikeFormats
import LookalikeTestSupport
import XCTest

final class FormatsTests: XCTestCase {
    func testPythonLiterals() throws {
        let v = try PythonLiteral.parse(#"{'a': 'it\'s', "b": [1, -2.5, (3, 4)], 'c': {'d': True, 'e': None, 1: False}, 'u': '\xe9\u00e9'}"#)
        let d = try XCTUnwrap(v as? [String: Any])
        XCTAssertEqual(d["a"] as? String, "it's")
        let b = try XCTUnwrap(d["b"] as? [Any])
        XCTAssertEqual(b[0] as? Int, 1)
        XCTAssertEqual(b[1] as? Double, -2.5)
        XCTAssertEqual((b[2] as? [Any])?.count, 2)
        let c = try XCTUnwrap(d["c"] as? [String: Any])
        XCTAssertEqual(c["d"] as? Bool, true)
        XCTAssertTrue(c["e"] is NSNull)
        XCTAssertEqual(c["1"] as? Bool, false)
        XCTAssertEqual(d["u"] as? String, "éé")
        for bad in ["{'a': 1", "{'a' 1}", "['x',", "{'a': __import__('os')}", "'open", "[1] 2", String(repeating: "[", count: 300)] {
            XCTAssertThrowsError(try PythonLiteral.parse(bad), bad)
        }
    }

    /// A .npy header whose shape makes rows × row bytes overflow is refused, not a trap (found
    /// by fuzz-formats: Tests/Fuzz).
    func testHostileNpyShapesAreRefused() throws {
        for shape in ["(3074457345618258603, 3)", "(1, 2305843009213693952)", "(2, 0)", "(4611686018427387904, 1)"] {
            var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shape), }"
            while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
            header += "\n"
            var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
            bytes += [UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)] + Array(header.utf8) + [UInt8](repeating: 0, count: 64)
            let path = NSTemporaryDirectory() + "lookalike-hostile-\(UUID().uuidString).npy"
            defer { try? FileManager.default.removeItem(atPath: path) }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try VectorFile(path: path), shape)
        }
    }

    /// The benchmarks hand vectors to numpy through writeNPY: what it writes reads back exactly,
    /// with a header padded to 64 bytes as numpy's format requires.
    func testWrittenNpyReadsBack() throws {
        let path = NSTemporaryDirectory() + "lookalike-written-\(UUID().uuidString).npy"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let values: [Float] = (0..<(7 * 5)).map { Float($0) * 0.5 - 3 }
        try VectorFile.writeNPY(values, rows: 7, dimension: 5, to: path)
        let file = try VectorFile(path: path)
        XCTAssertEqual(file.count, 7)
        XCTAssertEqual(file.dimension, 5)
        XCTAssertEqual(try file.vector(at: 6), Array(values[30..<35]))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertEqual((bytes.count - 7 * 5 * 4) % 64, 0)
    }

    func testNpyFilesAndTheirErrors() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("formats-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        func npy(_ header: String, _ body: [UInt8]) throws -> String {
            var h = header
            while (10 + h.utf8.count + 1) % 64 != 0 { h += " " }
            h += "\n"
            var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(h.utf8.count & 0xff), UInt8(h.utf8.count >> 8)]
            bytes += Array(h.utf8) + body
            let path = dir.appendingPathComponent("\(UUID()).npy").path
            FileManager.default.createFile(atPath: path, contents: Data(bytes))
            return path
        }
        let floats: [Float] = [1, 2, 3, 4, 5, 6]
        let body = floats.withUnsafeBytes { Array($0) }
        let good = try VectorFile(path: try npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", body))
        XCTAssertEqual(good.count, 2)
        XCTAssertEqual(try good.vector(at: 1), [4, 5, 6])
        let cases: [(String, [UInt8], String)] = [
            ("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", body, "not supported"),
            ("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", body, "Fortran"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", body, "not N × d"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 3), }", body, "cut short"),
        ]
        for (header, data, reason) in cases {
            XCTAssertThrowsError(try VectorFile(path: try npy(header, data))) { error in
                XCTAssertTrue("\(error)".contains(reason), "\(error)")
            }
        }
        let notNpy = dir.appendingPathComponent("x.npy").path
        FileManager.default.createFile(atPath: notNpy, contents: Data("hello world".utf8))
        XCTAssertThrowsError(try VectorFile(path: notNpy))
        XCTAssertThrowsError(try VectorFile(path: dir.appendingPathComponent("v.unknown").path))
    }

    /// The ingest tool compares the metadata's record count with the vectors before a join by
    /// row: the count must be what reading yields, broken lines included, blank lines not (nor
    /// lines of Unicode spaces, which reading trims away), and it must not move the reader.
    func testMetadataRecordCountMatchesWhatReadingYields() throws {
        let path = NSTemporaryDirectory() + "lookalike-meta-\(UUID().uuidString).jsonl"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let text = "{\"id\": 1}\n\n   \t\n{\"id\": 2}\r\n{broken\n\u{00A0}\u{2003}\n\r\n{\"id\": \"é\"}\n{\"id\": 4}"
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        let file = try MetadataFile(path: path, format: .jsonl)
        XCTAssertEqual(file.countRecords(), 5)
        var read = 0, failed = 0
        while let next = file.next() {
            read += 1
            if case .failure = next { failed += 1 }
        }
        XCTAssertEqual(read, 5)
        XCTAssertEqual(failed, 1)
        XCTAssertEqual(file.line, 9)
        XCTAssertEqual(file.countRecords(), 5)  // again, after reading: the same
        let empty = NSTemporaryDirectory() + "lookalike-meta-\(UUID().uuidString).jsonl"
        defer { try? FileManager.default.removeItem(atPath: empty) }
        try Data().write(to: URL(fileURLWithPath: empty))
        XCTAssertEqual(try MetadataFile(path: empty).countRecords(), 0)
    }
}
