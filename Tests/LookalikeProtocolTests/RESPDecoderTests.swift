// The frame decoder under fuzzing: splitting a stream anywhere changes nothing, and no input
// does anything but produce commands, wait for more bytes, or throw a protocol error.
import LookalikeProtocol
import NIOCore
import LookalikeFormats
import LookalikeTestSupport
import XCTest

final class RESPDecoderTests: XCTestCase {
    func decodeAll(_ chunks: [[UInt8]], limits: ProtocolLimits = ProtocolLimits()) throws -> [[String]] {
        var decoder = RESPDecoder(limits: limits)
        var buffer = ByteBuffer()
        var out: [[String]] = []
        for chunk in chunks {
            buffer.writeBytes(chunk)
            while let command = try decoder.next(&buffer) {
                out.append(command.arguments.map { String(decoding: $0.readableBytesView, as: UTF8.self) })
            }
            buffer.discardReadBytes()
        }
        return out
    }

    let stream: [UInt8] = Array((
        "*3\r\n$4\r\nVADD\r\n$3\r\nkey\r\n$0\r\n\r\n" +
        "PING\r\n" +
        "VSIM k \"a b\\x41\" 'it\\'s'\n" +
        "\r\n" +
        "*0\r\n" +
        "*2\r\n$4\r\nECHO\r\n$5\r\nhe\r\no\r\n"
    ).utf8)

    let expected = [["VADD", "key", ""], ["PING"], ["VSIM", "k", "a bA", "it's"], ["ECHO", "he\r\no"]]

    /// An inline line of exactly the limit is accepted however TCP splits its CR LF (found by
    /// fuzz-resp: it was refused when the CR came in one read and the LF in the next).
    func testInlineLimitDoesNotDependOnTheSplit() throws {
        var limits = ProtocolLimits()
        limits.maxInlineBytes = 16
        let line = Array("PING 0123456789a".utf8)
        XCTAssertEqual(line.count, 16)
        XCTAssertEqual(try decodeAll([line + [13, 10]], limits: limits), [["PING", "0123456789a"]])
        XCTAssertEqual(try decodeAll([line + [13], [10]], limits: limits), [["PING", "0123456789a"]])
        XCTAssertThrowsError(try decodeAll([line + Array("x\r".utf8), [10]], limits: limits))
    }

    /// Inline commands count against the argument limit, as multibulk ones do (found reading
    /// the decoder for fuzz-resp: before AUTH a 16 KiB line could carry thousands of words).
    func testInlineArgumentsAreLimited() throws {
        var limits = ProtocolLimits()
        limits.maxArguments = 3
        XCTAssertEqual(try decodeAll([Array("A B C\r\n".utf8)], limits: limits), [["A", "B", "C"]])
        XCTAssertThrowsError(try decodeAll([Array("A B C D\r\n".utf8)], limits: limits))
    }

    func testWholeStream() throws {
        XCTAssertEqual(try decodeAll([stream]), expected)
    }

    func testEverySplitGivesTheSameCommands() throws {
        for cut in 1..<stream.count {
            XCTAssertEqual(try decodeAll([Array(stream[..<cut]), Array(stream[cut...])]), expected, "cut at \(cut)")
        }
        XCTAssertEqual(try decodeAll(stream.map { [$0] }), expected, "byte by byte")
    }

    func testRandomBytesNeverCrash() {
        var rng = SeededRandom(seed: 99)
        var limits = ProtocolLimits()
        limits.maxBulkBytes = 1 << 16
        limits.maxArguments = 1 << 10
        limits.maxInlineBytes = 1 << 12
        for round in 0..<3000 {
            let alphabet: [UInt8] = Array("*$:\r\n0123456789-+ \"'\\xVADD".utf8)
            let n = Int(rng.next() % 200)
            let bytes: [UInt8] = (0..<n).map { _ in
                rng.next() % 3 == 0 ? UInt8(truncatingIfNeeded: rng.next()) : alphabet[Int(rng.next() % UInt64(alphabet.count))]
            }
            do {
                _ = try decodeAll([bytes], limits: limits)
            } catch let e as RESPProtocolError {
                XCTAssertFalse(e.message.isEmpty, "round \(round)")
            } catch {
                XCTFail("round \(round): unexpected \(error)")
            }
        }
    }

    func testLimitsAreCheckedBeforeAllocating() {
        var limits = ProtocolLimits()
        limits.maxBulkBytes = 10
        limits.maxArguments = 3
        limits.maxInlineBytes = 8
        XCTAssertThrowsError(try decodeAll([Array("*1\r\n$11\r\n".utf8)], limits: limits))
        XCTAssertThrowsError(try decodeAll([Array("*4\r\n".utf8)], limits: limits))
        XCTAssertThrowsError(try decodeAll([Array("PING 12345678\r\n".utf8)], limits: limits))
        XCTAssertThrowsError(try decodeAll([Array("PING1234567".utf8)], limits: limits), "a long line without newline")
        XCTAssertThrowsError(try decodeAll([Array("*9223372036854775808\r\n".utf8)], limits: limits))
        XCTAssertThrowsError(try decodeAll([Array("\"unbalanced\r\n".utf8)]))
        XCTAssertEqual(try decodeAll([Array("*1\r\n$10\r\n".utf8)], limits: limits), [], "waits for the bytes")
    }

    func testRESP2AndRESP3Encoding() {
        func encode(_ v: RESPValue, _ version: Int) -> String {
            var b = ByteBuffer()
            v.write(to: &b, version: version)
            return String(decoding: b.readableBytesView, as: UTF8.self)
        }
        let map = RESPValue.map([(.string("a"), .double(0.5)), (.string("b"), .double(1))])
        XCTAssertEqual(encode(map, 2), "*4\r\n$1\r\na\r\n$3\r\n0.5\r\n$1\r\nb\r\n$1\r\n1\r\n")
        XCTAssertEqual(encode(map, 3), "%2\r\n$1\r\na\r\n,0.5\r\n$1\r\nb\r\n,1\r\n")
        XCTAssertEqual(encode(.null, 2), "$-1\r\n")
        XCTAssertEqual(encode(.null, 3), "_\r\n")
        XCTAssertEqual(encode(.bool(true), 2), ":1\r\n")
        XCTAssertEqual(encode(.bool(false), 3), "#f\r\n")
        XCTAssertEqual(encode(.error("ERR a\r\nb"), 2), "-ERR a  b\r\n", "no line breaks in errors")
    }
}
