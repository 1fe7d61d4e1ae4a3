// Names carry byte strings losslessly; FILTER limits hold before a deep tree exists (issue 17).
import XCTest
@testable import LookalikeEngine
import LookalikeFormats

final class NamesAndLimitsTests: XCTestCase {
    func testEveryByteStringRoundTrips() {
        var rng = SeededRandom(seed: 17)
        var samples: [[UInt8]] = [[], [0xFF], [0xFE], [0x63, 0x80], [0xC3, 0xA9], [0xF4, 0x8F, 0xBE, 0x80],
                                  [0xED, 0xA0, 0x80], [0xE0, 0x80, 0x80], [0xF4, 0x90, 0x80, 0x80], [0x1F, 0x00]]
        for _ in 0..<2000 {
            samples.append((0..<Int(rng.next() % 12)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        }
        var seen: [String: [UInt8]] = [:]
        for bytes in samples {
            let s = Names.string(bytes)
            XCTAssertEqual(Names.bytes(s), bytes, "\(bytes)")
            if let other = seen[s] { XCTAssertEqual(other, bytes, "two byte strings became one name") }
            seen[s] = bytes
        }
    }

    func testValidUTF8NamesStayThemselves() {
        for name in ["shoes", "café", "靴", "a\u{1F}b", ""] {
            XCTAssertEqual(Names.string(Array(name.utf8)), name)
            XCTAssertEqual(Names.bytes(name), Array(name.utf8))
        }
    }

    func testFilterLimits() throws {
        var limits = FilterLimits()
        limits.maxDepth = 20
        XCTAssertNoThrow(try FilterExpression(String(repeating: "(", count: 10) + ".a" + String(repeating: ")", count: 10), limits: limits))
        for deep in [String(repeating: "(", count: 30) + ".a" + String(repeating: ")", count: 30),
                     String(repeating: "not ", count: 30) + ".a",
                     "1" + String(repeating: " + 1", count: 30),
                     "2" + String(repeating: " ** 2", count: 30),
                     String(repeating: "[", count: 30) + "1" + String(repeating: "]", count: 30)] {
            XCTAssertThrowsError(try FilterExpression(deep, limits: limits), deep) { error in
                XCTAssertTrue("\(error)".contains("nested deeper than 20"), "\(error)")
            }
        }
        limits.maxBytes = 10
        XCTAssertThrowsError(try FilterExpression(".aaaa == 12345", limits: limits))
    }
}
