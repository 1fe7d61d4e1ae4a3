// What the channel-level tests of the connection handlers share (CommandHandlerChannelTests,
// CommandHandlerSocketTests): a ServerContext on a real Engine in a temporary folder, the
// connection pipeline lookalike-server builds (ConnectionLimiter -> RESPDecoder ->
// CommandHandler), commands as RESP bytes, and a strict parser of the replies that come back.
// No mocks: the handlers, the engine, its commit thread and the search pool are the real ones.
// Threads: the parser and the encoders are pure; `SocketClient` is used by one test thread.
import Foundation
import Logging
import LookalikeEngine
import LookalikeProtocol
import NIOCore
import LookalikeTestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A reply as it came off the wire: RESP2 (what a connection speaks until HELLO 3), and the
/// RESP3 types the tests meet (a map keeps its keys and values in one list).
indirect enum WireReply: Equatable, CustomStringConvertible {
    case simple(String), error(String), integer(Int), bulk(String?), array([WireReply])
    case bool(Bool), null, map([WireReply])

    var description: String {
        switch self {
        case .simple(let s): return "+" + s
        case .error(let s): return "-" + s
        case .integer(let n): return ":\(n)"
        case .bulk(let s?): return s.count > 80 ? "\"\(s.prefix(80))...\" (\(s.utf8.count) bytes)" : "\"\(s)\""
        case .bulk(nil): return "(nil)"
        case .array(let items): return "[" + items.map(\.description).joined(separator: ", ") + "]"
        case .bool(let b): return b ? "#t" : "#f"
        case .null: return "_"
        case .map(let items): return "%{" + items.map(\.description).joined(separator: ", ") + "}"
        }
    }

    /// The message of an error reply, nil for any other reply.
    var errorText: String? {
        if case .error(let e) = self { return e }
        return nil
    }

    /// The next complete reply at `position` (advanced past it), or nil when more bytes are
    /// needed. A byte the protocol does not allow fails the test: the server must speak RESP.
    static func parse(_ bytes: [UInt8], at position: inout Int) -> WireReply? {
        var p = position
        guard let value = value(bytes, &p) else { return nil }
        position = p
        return value
    }

    private static func line(_ bytes: [UInt8], _ p: inout Int) -> String? {
        guard let end = bytes[p...].firstIndex(of: 10) else { return nil }
        XCTAssert(end > p && bytes[end - 1] == 13, "a reply line not ended by CRLF")
        let text = String(decoding: bytes[p..<(end - 1)], as: UTF8.self)
        p = end + 1
        return text
    }

    private static func value(_ bytes: [UInt8], _ p: inout Int) -> WireReply? {
        guard p < bytes.count, let text = line(bytes, &p) else { return nil }
        let kind = text.first, rest = String(text.dropFirst())
        switch kind {
        case "+": return .simple(rest)
        case "-": return .error(rest)
        case ":": return .integer(Int(rest) ?? Int.min)
        case "$":
            guard let n = Int(rest) else { XCTFail("bad bulk length \(rest)"); return nil }
            if n < 0 { return .bulk(nil) }
            guard bytes.count - p >= n + 2 else { return nil }
            defer { p += n + 2 }
            return .bulk(String(decoding: bytes[p..<(p + n)], as: UTF8.self))
        case "#": return .bool(rest == "t")
        case "_": return .null
        case "*", "%":
            guard let n = Int(rest) else { XCTFail("bad array length \(rest)"); return nil }
            var items: [WireReply] = []
            for _ in 0..<max(kind == "%" ? 2 * n : n, 0) {
                guard let item = value(bytes, &p) else { return nil }
                items.append(item)
            }
            return kind == "%" ? .map(items) : .array(items)
        default:
            XCTFail("unexpected reply line '\(text.prefix(40))'")
            return nil
        }
    }
}

/// One command as a RESP array of bulk strings, as client libraries send it.
func resp(_ words: String...) -> [UInt8] { resp(words) }

func resp(_ words: [String]) -> [UInt8] {
    var out = Array("*\(words.count)\r\n".utf8)
    for w in words { out += Array("$\(w.utf8.count)\r\n".utf8) + Array(w.utf8) + [13, 10] }
    return out
}

/// VADD of a 3-dimensional vector, optionally with attributes.
func vadd(_ key: String, _ v: [Float], _ element: String, attributes: String? = nil) -> [UInt8] {
    resp(["VADD", key, "VALUES", "\(v.count)"] + v.map { "\($0)" } + [element]
         + (attributes.map { ["SETATTR", $0] } ?? []))
}

/// A server as lookalike-server builds it, on a fresh data folder; shut down when the test
/// ends. Small where a test would otherwise wait: no fsync, a 1 GiB map, one build thread.
func makeTestServer(_ test: XCTestCase, configure: (inout ServerOptions) -> Void = { _ in }) throws -> ServerContext {
    var o = ServerOptions()
    o.dataDirectory = temporaryDirectory(test)
    o.searchThreads = 2
    o.engine.storage.sync = .none
    o.engine.storage.mapSize = 1 << 30
    o.engine.buildThreads = 1
    o.engine.batchJobThreads = 1
    o.engine.batchJobMemory = 16 << 20
    o.engine.categoryModel = false
    configure(&o)
    var logger = Logger(label: "lookalike.test")
    logger.logLevel = .critical
    let server = ServerContext(options: o, engine: try Engine(directory: o.dataDirectory, options: o.engine, logger: logger),
                               logger: logger)
    test.addTeardownBlock { server.shutdown() }
    return server
}

/// Adds one connection's handlers, as lookalike-server's child channel initializer does
/// (no password: the connection is authenticated from the start).
func addConnectionHandlers(_ channel: Channel, server: ServerContext) throws {
    let sync = channel.pipeline.syncOperations
    let auth = ConnectionAuth(isAuthenticated: true)
    try sync.addHandler(ConnectionLimiter(server: server))
    try sync.addHandler(ByteToMessageHandler(RESPDecoder(limits: server.options.protocolLimits, auth: auth)))
    try sync.addHandler(CommandHandler(server: server, auth: auth))
}

/// A blocking client on a Unix socket: sends whole pipelines, reads replies one at a time.
/// A reply that does not come within 30 s fails the test instead of hanging it.
/// Unchecked Sendable: one thread may send while another reads (a socket is full duplex);
/// `send` touches nothing but the descriptor, `reply` owns the read buffer.
final class SocketClient: @unchecked Sendable {
    let fd: Int32
    private var buffer: [UInt8] = []
    private var position = 0

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path.utf8.prefix($0.count - 1)) }
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard ok == 0 else { close(fd); throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
            sent += n
        }
    }

    struct Timeout: Error {}

    /// The next reply; nil when the server closed the connection before completing one.
    func reply() throws -> WireReply? {
        while true {
            if let r = WireReply.parse(buffer, at: &position) { return r }
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { throw Timeout() }
            guard n > 0 else { return nil }  // EOF (or reset): closed
            if position > 1 << 20 { buffer.removeFirst(position); position = 0 }
            buffer += chunk[0..<n]
        }
    }

    func call(_ words: String...) throws -> WireReply? {
        try send(resp(words))
        return try reply()
    }
}
