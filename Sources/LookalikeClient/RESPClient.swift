// RESPClient: a small blocking Redis-protocol client for the tools (online ingest, online
// compaction, benchmarks). Commands go out as RESP2 arrays of bulk strings; replies are parsed
// as RESP2/RESP3 values. Pipelining: `send` many, then `read` as many replies.
//
// Owns: one TCP socket and its read buffer.
// Threads: one thread at a time (the tools' main loop).
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public indirect enum Reply: Equatable, Sendable {
    case simple(String)
    case error(String)
    case integer(Int)
    case bulk([UInt8]?)
    case array([Reply]?)
    case double(Double)

    public var text: String? {
        switch self {
        case .simple(let s): return s
        case .bulk(let b?): return String(decoding: b, as: UTF8.self)
        case .integer(let n): return String(n)
        case .double(let d): return String(d)
        default: return nil
        }
    }

    /// An error reply's message without its leading code word ("ERR no such key 'x'" -> "no such
    /// key 'x'"): the tools print it after their own "Error:", once. Nil for other replies.
    public var errorMessage: String? {
        guard case .error(let e) = self else { return nil }
        let code = e.prefix { $0.isASCII && $0.isUppercase }
        guard !code.isEmpty, e.dropFirst(code.count).first == " " else { return e }
        return String(e.dropFirst(code.count + 1))
    }
}

public struct ClientError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public final class RESPClient {
    private var fd: Int32 = -1
    private var buffer: [UInt8] = []
    private var position = 0
    private var outgoing: [UInt8] = []

    /// Connects to "host:port" (host defaults to 127.0.0.1), and authenticates if asked.
    public init(address: String, password: String? = nil) throws {
        let parts = address.split(separator: ":", omittingEmptySubsequences: false)
        guard let port = parts.last.flatMap({ UInt16($0) }) else { throw ClientError("--server must be host:port, got '\(address)'") }
        let host = parts.count > 1 ? parts.dropLast().joined(separator: ":") : "127.0.0.1"
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host.isEmpty ? "127.0.0.1" : host, String(port), &hints, &list) == 0, let first = list else {
            throw ClientError("cannot resolve \(host)")
        }
        defer { freeaddrinfo(list) }
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let a = entry {
            let s = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
            if s >= 0, connect(s, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 {
                fd = s
                break
            }
            if s >= 0 { close(s) }
            entry = a.pointee.ai_next
        }
        guard fd >= 0 else { throw ClientError("cannot connect to \(address): \(String(cString: strerror(errno))) (is lookalike-server running there?)") }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if let password {
            if let e = try call(["AUTH", password]).errorMessage { throw ClientError("AUTH failed: \(e) (check --password)") }
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Queues one command; `flush` (or `read`) sends what is queued.
    public func send(_ arguments: [String]) { send(arguments.map { Array($0.utf8) }) }

    public func send(_ arguments: [[UInt8]]) {
        outgoing += Array("*\(arguments.count)\r\n".utf8)
        for a in arguments {
            outgoing += Array("$\(a.count)\r\n".utf8)
            outgoing += a
            outgoing += [13, 10]
        }
    }

    public func flush() throws {
        var sent = 0
        while sent < outgoing.count {
            let n = outgoing[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw ClientError("connection lost while sending: \(String(cString: strerror(errno)))") }
            sent += n
        }
        outgoing.removeAll(keepingCapacity: true)
    }

    /// The next reply (sends anything queued first).
    public func read() throws -> Reply {
        if !outgoing.isEmpty { try flush() }
        return try value()
    }

    public func call(_ arguments: [String]) throws -> Reply {
        send(arguments)
        return try read()
    }

    /// The next reply, without sending anything: for a reader thread beside one sender thread
    /// that only calls `send` and `flush` (open-loop load generators).
    public func receive() throws -> Reply { try value() }

    /// One command with binary arguments (FP32 blobs), and its reply.
    public func call(_ arguments: [[UInt8]]) throws -> Reply {
        send(arguments)
        return try read()
    }

    // MARK: Reply parsing

    private func value() throws -> Reply {
        let line = try readLine()
        guard let kind = line.first else { throw ClientError("empty reply line") }
        let rest = String(decoding: line.dropFirst(), as: UTF8.self)
        switch kind {
        case UInt8(ascii: "+"): return .simple(rest)
        case UInt8(ascii: "-"), UInt8(ascii: "!"): return .error(rest)
        case UInt8(ascii: ":"): return .integer(Int(rest) ?? 0)
        case UInt8(ascii: ","): return .double(Double(rest) ?? .nan)
        case UInt8(ascii: "#"): return .integer(rest == "t" ? 1 : 0)
        case UInt8(ascii: "_"): return .bulk(nil)
        case UInt8(ascii: "$"), UInt8(ascii: "="):
            guard let n = Int(rest) else { throw ClientError("bad bulk length '\(rest)'") }
            if n < 0 { return .bulk(nil) }
            let bytes = try readBytes(n + 2)
            return .bulk(Array(bytes.prefix(n)))
        case UInt8(ascii: "*"), UInt8(ascii: "%"), UInt8(ascii: "~"), UInt8(ascii: ">"):
            guard var n = Int(rest) else { throw ClientError("bad array length '\(rest)'") }
            if n < 0 { return .array(nil) }
            if kind == UInt8(ascii: "%") { n *= 2 }
            return .array(try (0..<n).map { _ in try value() })
        default:
            throw ClientError("unexpected reply '\(String(decoding: line.prefix(40), as: UTF8.self))'")
        }
    }

    private func fill() throws {
        if position > 0 && (position == buffer.count || position > 1 << 20) {
            buffer.removeFirst(position)
            position = 0
        }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { throw ClientError("the server closed the connection") }
        buffer += chunk[0..<n]
    }

    private func readLine() throws -> ArraySlice<UInt8> {
        while true {
            if let end = buffer[position...].firstIndex(of: 10), end > position, buffer[end - 1] == 13 {
                let line = buffer[position..<(end - 1)]
                position = end + 1
                return line
            }
            try fill()
        }
    }

    private func readBytes(_ n: Int) throws -> ArraySlice<UInt8> {
        while buffer.count - position < n { try fill() }
        let out = buffer[position..<(position + n)]
        position += n
        return out
    }
}
