// CommandHandlerSocketTests: CommandHandler's backpressure and output-buffer limit (issue #16),
// over a real Unix socket on a real NIOPosix event loop, the connection pipeline and child
// options as lookalike-server sets them, and a real Engine. A socket is needed here: only a
// kernel buffer that fills up makes writes wait, which is what both mechanisms react to (a
// NIOAsyncTestingChannel completes every write at its flush; see CommandHandlerChannelTests).
// A Unix socket rather than TCP: its buffers are small and fixed (about 200 KiB), where TCP's
// grow to megabytes, so a client that does not read stalls the server after few replies.
//
// What can be observed, and how: the server's command counter (how many commands it has read)
// stops growing while the client does not read, and the client's own send blocks (the server
// no longer takes its bytes); once the client reads, everything is answered, in order. The
// counter is sampled until it stops moving (a settling wait, not a timing assertion: a slow
// machine can only make a stall look earlier, never make a working server fail the test).
// The stall is not at maxPipeline commands: the bytes of one wakeup's reads (up to 16 of 64
// KiB) are decoded and dispatched whole, so with maxPipeline 4 about 750 of these 1 KiB
// commands were read before it (1500 with the water mark alone).
// Threads: the test thread reads; a sender thread writes the pipeline, as a client would.
import Foundation
@testable import LookalikeProtocol
import NIOCore
import NIOPosix
import LookalikeTestSupport
import XCTest

final class CommandHandlerSocketTests: XCTestCase {
    /// Listens on a Unix socket in the server's data folder, with lookalike-server's child
    /// options (16 reads per wakeup, reading paused above 1 MiB of unsent replies) unless
    /// `waterMark` says otherwise. Returns the socket's path.
    private func listen(_ server: ServerContext, waterMark: ChannelOptions.Types.WriteBufferWaterMark
                        = .init(low: 256 << 10, high: 1 << 20)) throws -> String {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let path = server.options.dataDirectory + "/server.sock"
        let listener = try ServerBootstrap(group: group)
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 16)
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: waterMark)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try addConnectionHandlers(channel, server: server) }
            }
            .bind(unixDomainSocketPath: path).wait()
        addTeardownBlock {
            try? listener.close().wait()
            try? group.syncShutdownGracefully()
        }
        return path
    }

    /// Adds `count` elements e0... to `key`, each with attributes of about `bytes` bytes
    /// naming its number; returns each element's attributes.
    private func fill(_ path: String, key: String, count: Int, bytes: Int) throws -> [String] {
        let client = try SocketClient(path: path)
        let pad = String(repeating: "x", count: bytes)
        let attributes = (0..<count).map { #"{"k":\#($0),"pad":"\#(pad)"}"# }
        try client.send(attributes.enumerated().flatMap { vadd(key, [Float($0.offset + 1), 1, 0], "e\($0.offset)", attributes: $0.element) })
        for k in 0..<count { XCTAssertEqual(try client.reply(), .integer(1), "VADD e\(k)") }
        return attributes
    }

    private func processed(_ server: ServerContext) -> Int { server.totalCommands.load(ordering: .relaxed) }

    /// Samples `value` every 50 ms until it has moved from `start` and then not changed for
    /// half a second (or 30 s pass).
    private func settled(from start: Int, _ value: () -> Int) -> Int {
        let deadline = Date().addingTimeInterval(30)
        while value() == start && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        var last = value(), unchanged = 0
        while unchanged < 10 && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
            let now = value()
            unchanged = now == last ? unchanged + 1 : 0
            last = now
        }
        return last
    }

    /// A pipeline far larger than the socket's buffers: three ECHOs of 1 KiB (answered at
    /// once) to one VGETATTR (answered by the search pool), with the replies they must get.
    private func bigPipeline(_ n: Int, attributes: [String]) -> (bytes: [UInt8], replies: [WireReply]) {
        let pad = String(repeating: "y", count: 1000)
        var bytes: [UInt8] = [], replies: [WireReply] = []
        for i in 0..<n {
            if i % 4 == 3 {
                bytes += resp("VGETATTR", "s", "e\(i % attributes.count)")
                replies.append(.bulk(attributes[i % attributes.count]))
            } else {
                bytes += resp("ECHO", "\(i):\(pad)")
                replies.append(.bulk("\(i):\(pad)"))
            }
        }
        return (bytes, replies)
    }

    /// A client sends `n` commands and reads nothing until the server has stopped reading;
    /// then it reads every reply. Checks the stall and the order.
    private func stallThenDrain(_ server: ServerContext, path: String, n: Int) throws {
        let attributes = try fill(path, key: "s", count: 50, bytes: 1000)
        let (pipeline, expected) = bigPipeline(n, attributes: attributes)
        let client = try SocketClient(path: path)
        let start = processed(server)
        let sent = DispatchSemaphore(value: 0)
        let sender = Thread {
            do { try client.send(pipeline) } catch { XCTFail("send: \(error)") }
            sent.signal()
        }
        sender.start()
        let stalledAt = settled(from: start) { processed(server) } - start
        let sentAll = sent.wait(timeout: .now()) == .success
        XCTAssertFalse(sentAll, "the server took the whole pipeline from a client that reads nothing")
        XCTAssertLessThan(stalledAt, n / 2, "the server kept reading from a client that reads nothing")
        XCTAssertGreaterThan(stalledAt, 0)
        // Reading resumes as the replies drain; every reply comes, in request order.
        for i in 0..<n {
            let reply = try client.reply()
            guard reply == expected[i] else {
                XCTFail("reply \(i) of \(n): got \(reply?.description ?? "EOF"), expected \(expected[i])")
                break
            }
        }
        if !sentAll { XCTAssertEqual(sent.wait(timeout: .now() + 30), .success, "the sender is still blocked") }
        XCTAssertEqual(processed(server) - start, n)
        XCTAssertEqual(try client.call("PING"), .simple("PONG"))
    }

    // MARK: 3. Backpressure

    /// maxPipeline alone: the write buffer's water mark is set out of reach, so only the count
    /// of commands in flight (not yet written to the socket) can stop the reading.
    func testMaxPipelineStopsReadingAClientThatReadsNothingAndResumes() throws {
        let server = try makeTestServer(self) { $0.maxPipeline = 4 }
        let path = try listen(server, waterMark: .init(low: 1 << 30, high: 1 << 30))
        try stallThenDrain(server, path: path, n: 12_000)
    }

    /// The write buffer's water mark alone (maxPipeline at its default, 8192, out of reach).
    func testFullWriteBufferStopsReadingAClientThatReadsNothingAndResumes() throws {
        let server = try makeTestServer(self)
        XCTAssertEqual(server.options.maxPipeline, 8192)
        let path = try listen(server)
        try stallThenDrain(server, path: path, n: 12_000)
    }

    // MARK: 4. The output-buffer limit

    /// A client asking for large replies and reading none is disconnected once more than its
    /// limit waits unsent; whatever it had been sent before stays readable, in order.
    func testClientOverItsOutputLimitIsDisconnected() throws {
        let server = try makeTestServer(self) { $0.clientOutputBufferLimit = 256 << 10 }
        let path = try listen(server)
        let attributes = try fill(path, key: "s", count: 20, bytes: 60_000)
        let n = 200
        let client = try SocketClient(path: path)
        try client.send((0..<n).flatMap { resp("VGETATTR", "s", "e\($0 % 20)") })
        var received = 0
        while let reply = try client.reply() {  // until the server closes the connection
            XCTAssertEqual(reply, .bulk(attributes[received % 20]), "reply \(received)")
            received += 1
        }
        XCTAssertEqual(server.outputLimitDisconnections.load(ordering: .relaxed), 1)
        // Often none: the limit counts replies not yet flushed too, so a loop turn that
        // completes more than the limit of them closes before the first flush (Redis counts
        // its unsent reply list the same way).
        XCTAssertLessThan(received, n, "a client over its output limit got every reply")
        // Only that connection was closed.
        let other = try SocketClient(path: path)
        XCTAssertEqual(try other.call("VCARD", "s"), .integer(20))
    }
}
