// CommandHandlerChannelTests: CommandHandler's ordering and error paths at the channel level
// (issue #16): the real connection pipeline (ConnectionLimiter -> RESPDecoder ->
// CommandHandler) on a real Engine, fed bytes as a socket would feed them, its replies read
// back as bytes. What is checked: replies in request order across the ordering classes, each
// read seeing the connection's earlier writes; an error reply keeps its place; a protocol
// error answers after the replies owed, then closes, and nothing after it runs.
//
// Why NIOAsyncTestingChannel: replies complete on other threads (the search pool, the commit
// thread), which EmbeddedEventLoop does not allow. NIOAsyncTestingEventLoop runs everything
// on one serial queue and, when a promise is completed from another thread, runs the loop at
// once (its off-loop `execute` does), so the handler's callbacks run on the loop and its
// `assumeIsolated()` checks hold. What it cannot show: it has no socket (a write completes as
// soon as it is flushed; autoRead and read() do nothing), so backpressure and the output-buffer
// limit are tested over a real Unix socket instead (CommandHandlerSocketTests).
// Threads: the test's task drives the channel; the channel's callbacks run on its loop.
import Foundation
import LookalikeEngine
import LookalikeProtocol
import NIOCore
import NIOEmbedded
import LookalikeTestSupport
import XCTest

final class CommandHandlerChannelTests: XCTestCase {
    /// One client connection: the handlers on a testing channel, active.
    private func connect(_ server: ServerContext) async throws -> ChannelReader {
        let channel = try await NIOAsyncTestingChannel { try addConnectionHandlers($0, server: server) }
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 50_000)).get()
        addTeardownBlock { channel.close(promise: nil) }
        return ChannelReader(channel)
    }

    // MARK: 1. Order, and reads that see the connection's own writes

    func testPipelineOfWritesAndReadsAnswersInRequestOrder() async throws {
        let server = try makeTestServer(self)
        let c = try await connect(server)
        let steps: [([UInt8], WireReply)] = [
            (vadd("s", [1, 0, 0], "a"), .integer(1)),
            (resp("VSIM", "s", "VALUES", "3", "1", "0", "0", "COUNT", "10"), .array([.bulk("a")])),
            (vadd("s", [0, 1, 0], "b"), .integer(1)),
            (resp("VCARD", "s"), .integer(2)),
            (resp("VSIM", "s", "VALUES", "3", "0", "1", "0", "COUNT", "10"), .array([.bulk("b"), .bulk("a")])),
            (resp("PING"), .simple("PONG")),  // runs at once, answered in its place
            (resp("VREM", "s", "a"), .integer(1)),
            (resp("VCARD", "s"), .integer(1)),
            (resp("VSIM", "s", "VALUES", "3", "1", "0", "0", "COUNT", "10"), .array([.bulk("b")])),
            (vadd("s", [0, 0, 1], "c", attributes: #"{"n":3}"#), .integer(1)),
            (resp("VGETATTR", "s", "c"), .bulk(#"{"n":3}"#)),
            (resp("DEL", "s"), .integer(1)),  // exclusive: after everything earlier
            (resp("VCARD", "s"), .integer(0)),
            (resp("ECHO", "done"), .bulk("done")),
        ]
        try await c.send(steps.flatMap(\.0))
        let got = try await c.next(steps.count)
        XCTAssertEqual(got, steps.map(\.1))
    }

    /// Many rounds of write, reads and an at-once command in one pipeline: each read sees all
    /// the writes before it, whichever thread ran them.
    func testLongPipelineEachReadSeesTheEarlierWrites() async throws {
        let server = try makeTestServer(self)
        let c = try await connect(server)
        var pipeline: [UInt8] = []
        var expected: [WireReply] = []
        for i in 0..<60 {
            pipeline += vadd("s", [Float(i + 1), 1, 0.5], "e\(i)")
            pipeline += resp("VCARD", "s") + resp("VISMEMBER", "s", "e\(i)") + resp("ECHO", "r\(i)")
            expected += [.integer(1), .integer(i + 1), .integer(1), .bulk("r\(i)")]
            if i % 10 == 9 {
                pipeline += resp("VREM", "s", "e\(i)") + resp("VISMEMBER", "s", "e\(i)")
                pipeline += vadd("s", [Float(i + 1), 1, 0.5], "e\(i)")
                expected += [.integer(1), .integer(0), .integer(1)]
            }
        }
        try await c.send(pipeline)
        let got = try await c.next(expected.count)
        XCTAssertEqual(got.count, expected.count)
        if let i = Array(zip(got, expected)).firstIndex(where: { $0 != $1 }) {
            XCTFail("reply \(i): got \(got[i]), expected \(expected[i])")
        }
    }

    /// Each reply is encoded in the protocol version in force when its command was sent, even
    /// when it completes after a HELLO that changed it.
    func testRepliesKeepTheProtocolVersionOfTheirCommand() async throws {
        let server = try makeTestServer(self)
        let c = try await connect(server)
        let read = resp("VISMEMBER", "s", "a") + resp("VGETATTR", "s", "a")
        try await c.send(vadd("s", [1, 0, 0], "a") + read + resp("HELLO", "3") + read + resp("HELLO", "2") + read)
        let got = try await c.next(9)
        guard got.count == 9 else { return XCTFail("\(got.count) replies of 9") }
        XCTAssertEqual(got[0], .integer(1))
        XCTAssertEqual(Array(got[1...2]), [.integer(1), .bulk(nil)], "RESP2 replies, sent before HELLO 3")
        guard case .map = got[3] else { return XCTFail("HELLO 3 answered \(got[3])") }
        XCTAssertEqual(Array(got[4...5]), [.bool(true), .null], "RESP3 replies")
        guard case .array = got[6] else { return XCTFail("HELLO 2 answered \(got[6])") }
        XCTAssertEqual(Array(got[7...8]), [.integer(1), .bulk(nil)], "RESP2 replies again")
    }

    // MARK: 2. A protocol error after pipelined commands

    func testProtocolErrorAnswersAfterTheRepliesOwedThenCloses() async throws {
        let malformed: [(frame: String, error: String)] = [
            ("*2\r\n$3\r\nfoo\r\n:x\r\n", "ERR Protocol error: expected '$', got ':'"),
            ("*1\r\n$abc\r\n", "ERR Protocol error: invalid bulk length"),
            ("*1\r\n$-3\r\n", "ERR Protocol error: invalid bulk length"),
            ("*1\r\n$3\r\nfooXY\r\n", "ERR Protocol error: bulk string not terminated by CRLF"),
            ("*x\r\n", "ERR Protocol error: invalid multibulk length"),
        ]
        let server = try makeTestServer(self)
        for (n, bad) in malformed.enumerated() {
            let key = "k\(n)"
            let c = try await connect(server)
            // Reads and writes still running when the bad frame arrives; a write after it.
            let before = vadd(key, [1, 0, 0], "a") + resp("VSIM", key, "ELE", "a", "COUNT", "5")
                + vadd(key, [0, 1, 0], "b") + resp("VCARD", key)
            try await c.send(before + Array(bad.frame.utf8) + vadd(key, [0, 0, 1], "c"))
            let got = try await c.untilClosed()
            XCTAssertEqual(got, [.integer(1), .array([.bulk("a")]), .integer(1), .integer(2), .error(bad.error)],
                           "frame \(bad.frame.debugDescription)")
            XCTAssertTrue(c.closed, "the connection stays open after \(bad.frame.debugDescription)")
            // Nothing after the bad frame ran; the server still serves others.
            let other = try await connect(server)
            try await other.send(resp("VCARD", key) + resp("VISMEMBER", key, "c"))
            let check = try await other.next(2)
            XCTAssertEqual(check, [.integer(2), .integer(0)], "frame \(bad.frame.debugDescription)")
        }
    }

    /// QUIT, then bytes that do not parse (a client that pipelines past its QUIT): the replies
    /// owed before QUIT and its +OK still go out, as Redis sends them.
    func testMalformedBytesAfterQuitStillAnswerTheRepliesOwed() async throws {
        let server = try makeTestServer(self)
        let c = try await connect(server)
        try await c.send(vadd("s", [1, 0, 0], "a") + resp("VSIM", "s", "ELE", "a", "COUNT", "5") + resp("QUIT")
                         + Array("*1\r\n$abc\r\n".utf8))
        let got = try await c.untilClosed()
        XCTAssertEqual(got, [.integer(1), .array([.bulk("a")]), .simple("OK")])
        XCTAssertTrue(c.closed)
    }

    // MARK: 5. Error replies between good commands

    func testErrorRepliesKeepTheirPlaceBetweenGoodCommands() async throws {
        let server = try makeTestServer(self)
        let c = try await connect(server)
        // (command, expected reply; for an error, the start of its message)
        let steps: [([UInt8], WireReply)] = [
            (vadd("s", [1, 0, 0], "a"), .integer(1)),
            (resp("NOSUCHCOMMAND", "x"), .error("ERR unknown command")),  // refused at once...
            (resp("VCARD", "s"), .integer(1)),
            (resp("VCARD"), .error("ERR wrong number of arguments")),  // ...behind a pending read
            (resp("VADD", "s", "VALUES", "3", "1", "x", "0", "b"), .error("ERR invalid vector")),
            (vadd("s", [1, 0, 0, 0], "d"), .error("")),  // the engine refuses it: 4 dimensions, not 3
            (resp("VSIM", "s", "VALUES", "3", "1", "0", "0", "COUNT", "5"), .array([.bulk("a")])),
            (resp("VSIM", "s", "VALUES", "3", "1", "0", "0", "COUNT", "x"), .error("")),
            (resp("VSIM", "nokey", "ELE", "a"), .array([])),
            (resp("VSIM", "s", "ELE", "nosuch"), .error("")),  // refused by the search, on the pool
            (resp("PING"), .simple("PONG")),
            (resp("VCARD", "s"), .integer(1)),
            (resp("VGETATTR", "s", "a"), .bulk(nil)),
        ]
        try await c.send(steps.flatMap(\.0))
        let got = try await c.next(steps.count)
        XCTAssertEqual(got.count, steps.count)
        for (i, (reply, step)) in zip(got, steps).enumerated() {
            if case .error(let prefix) = step.1 {
                XCTAssert(reply.errorText?.hasPrefix(prefix) ?? false, "reply \(i): got \(reply), expected an error '\(prefix)...'")
            } else {
                XCTAssertEqual(reply, step.1, "reply \(i)")
            }
        }
        XCTAssertFalse(c.closed, "an error reply closed the connection")
    }
}

/// A testing channel's client side: the bytes it is sent, and its replies parsed in order.
/// A wait longer than 30 s closes the channel, so a handler that never answers fails the test
/// instead of hanging it.
final class ChannelReader {
    let channel: NIOAsyncTestingChannel
    private var bytes: [UInt8] = []
    private var position = 0
    private(set) var closed = false

    init(_ channel: NIOAsyncTestingChannel) { self.channel = channel }

    func send(_ data: [UInt8]) async throws {
        try await channel.writeInbound(ByteBuffer(bytes: data))
    }

    /// The next `count` replies (fewer if the channel closes first).
    func next(_ count: Int) async throws -> [WireReply] {
        var replies: [WireReply] = []
        while replies.count < count {
            if let r = WireReply.parse(bytes, at: &position) { replies.append(r); continue }
            guard try await receive() else { break }
        }
        return replies
    }

    /// Every reply until the channel closes; then `closed` is true.
    func untilClosed() async throws -> [WireReply] {
        let replies = try await next(Int.max)
        XCTAssertEqual(position, bytes.count, "a partial reply before the close")
        return replies
    }

    /// Waits for the channel's next write; false once it has closed.
    private func receive() async throws -> Bool {
        let channel = self.channel
        let watchdog = Task {
            try await Task.sleep(nanoseconds: 30_000_000_000)
            XCTFail("no reply within 30 s")
            channel.close(promise: nil)
        }
        defer { watchdog.cancel() }
        do {
            let buffer = try await channel.waitForOutboundWrite(as: ByteBuffer.self)
            bytes += buffer.readableBytesView
            return true
        } catch ChannelError.ioOnClosedChannel {
            closed = true
            return false
        }
    }
}
