// RESPDecoder: bytes in, commands out. Speaks RESP multibulk (what client libraries send) and
// Redis inline commands (a line of words, as typed into nc or telnet).
//
// Owns: the parse state of one connection's incoming stream.
// Invariants: a frame is parsed incrementally: each argument is taken off the buffer once it
// is complete, so a large frame arriving in many reads costs O(frame), not O(frame²). Every
// length is checked against the limits before anything is allocated for it.
// Threads: the connection's event loop (it is a NIO ByteToMessageDecoder).
// Errors: a malformed or oversized frame throws RESPProtocolError; the handler answers
// "-ERR Protocol error: ..." and closes that connection only.
import NIOCore

public struct ProtocolLimits: Sendable {
    /// Largest single argument (bulk string), bytes.
    public var maxBulkBytes = 64 << 20
    /// Most arguments in one command.
    public var maxArguments = 1 << 20
    /// Longest inline command line, bytes.
    public var maxInlineBytes = 64 << 10
    /// Largest whole command, bytes: also the most a connection's unparsed input may hold.
    public var maxFrameBytes = 256 << 20
    /// Before AUTH (when a password is set), as in Redis: at most this many arguments, and
    /// arguments and inline lines of at most `unauthenticatedBytes`. Nobody unknown may make
    /// the server hold a large frame.
    public var unauthenticatedArguments = 10
    public var unauthenticatedBytes = 16 << 10
    public init() {}
}

/// Whether a connection has authenticated: set by the command handler (AUTH, HELLO AUTH), read
/// by the decoder to choose its limits. Threads: the connection's event loop only.
public final class ConnectionAuth: @unchecked Sendable {
    public var isAuthenticated: Bool
    public init(isAuthenticated: Bool) { self.isAuthenticated = isAuthenticated }
}

public struct RESPProtocolError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public var description: String { "Protocol error: \(message)" }
}

/// One command: its arguments as they arrived.
public struct RESPCommand: Sendable {
    public var arguments: [ByteBuffer]
    public init(arguments: [ByteBuffer]) { self.arguments = arguments }
}

public struct RESPDecoder: ByteToMessageDecoder {
    public typealias InboundOut = RESPCommand

    let limits: ProtocolLimits
    /// Nil: always authenticated (no password set, or fuzzing).
    let auth: ConnectionAuth?
    /// Arguments expected in the frame being read (nil between frames).
    private var expected: Int?
    private var arguments: [ByteBuffer] = []
    private var frameBytes = 0

    public init(limits: ProtocolLimits, auth: ConnectionAuth? = nil) {
        self.limits = limits
        self.auth = auth
    }

    private var unauthenticated: Bool { auth.map { !$0.isAuthenticated } ?? false }
    private var maxArguments: Int { unauthenticated ? limits.unauthenticatedArguments : limits.maxArguments }
    private var maxBulkBytes: Int { unauthenticated ? limits.unauthenticatedBytes : limits.maxBulkBytes }
    private var maxInlineBytes: Int { unauthenticated ? limits.unauthenticatedBytes : limits.maxInlineBytes }
    private var prefix: String { unauthenticated ? "unauthenticated " : "invalid " }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let command = try next(&buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(command))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A half-received command at EOF is dropped: there is nobody to answer.
        while let command = try next(&buffer) {
            context.fireChannelRead(wrapInboundOut(command))
        }
        return .needMoreData
    }

    /// The next complete command, or nil when more bytes are needed. Public for fuzzing.
    public mutating func next(_ buffer: inout ByteBuffer) throws -> RESPCommand? {
        while true {
            if expected == nil {
                guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return nil }
                if first != UInt8(ascii: "*") {
                    guard let line = try inlineCommand(&buffer) else { return nil }
                    if line.arguments.isEmpty { continue }  // blank line: ignored, as Redis does
                    return line
                }
                guard let count = try header(&buffer, prefix: "*", what: "multibulk length") else { return nil }
                guard count <= maxArguments else {
                    throw RESPProtocolError(message: prefix + "multibulk length")
                }
                if count <= 0 { continue }  // "*0" and "*-1" are empty commands: ignored
                expected = count
                arguments = []
                arguments.reserveCapacity(min(count, 1024))
                frameBytes = 0
            }
            while arguments.count < expected! {
                guard let arg = try bulkArgument(&buffer) else { return nil }
                arguments.append(arg)
            }
            expected = nil
            defer { arguments = [] }
            return RESPCommand(arguments: arguments)
        }
    }

    /// Reads "<prefix><integer>\r\n"; nil if the line is not complete yet.
    private func header(_ buffer: inout ByteBuffer, prefix: Character, what: String) throws -> Int? {
        let view = buffer.readableBytesView
        guard let newline = view.firstIndex(of: UInt8(ascii: "\n")) else {
            if view.count > 64 { throw RESPProtocolError(message: "invalid \(what)") }
            return nil
        }
        let lineLength = newline - view.startIndex
        guard lineLength >= 2, view[newline - 1] == UInt8(ascii: "\r") else {
            throw RESPProtocolError(message: "invalid \(what)")
        }
        let first = view[view.startIndex]
        guard first == UInt8(ascii: String(prefix).unicodeScalars.first!) else {
            throw RESPProtocolError(message: "expected '\(prefix)', got '\(Self.printable(first))'")
        }
        let digits = view[(view.startIndex + 1)..<(newline - 1)]
        guard digits.count <= 19, let n = Int(String(decoding: digits, as: UTF8.self)) else {
            throw RESPProtocolError(message: "invalid \(what)")
        }
        buffer.moveReaderIndex(forwardBy: lineLength + 1)
        return n
    }

    /// One "$<len>\r\n<bytes>\r\n" argument, taken off the buffer only when complete.
    private mutating func bulkArgument(_ buffer: inout ByteBuffer) throws -> ByteBuffer? {
        var probe = buffer
        guard let length = try header(&probe, prefix: "$", what: "bulk length") else { return nil }
        guard length >= 0 else { throw RESPProtocolError(message: "invalid bulk length") }
        guard length <= maxBulkBytes else { throw RESPProtocolError(message: prefix + "bulk length") }
        guard frameBytes + length <= limits.maxFrameBytes else {
            throw RESPProtocolError(message: "command larger than \(limits.maxFrameBytes) bytes")
        }
        guard probe.readableBytes >= length + 2 else { return nil }
        let arg = probe.readSlice(length: length)!
        guard probe.readInteger(as: UInt8.self) == UInt8(ascii: "\r"),
              probe.readInteger(as: UInt8.self) == UInt8(ascii: "\n") else {
            throw RESPProtocolError(message: "bulk string not terminated by CRLF")
        }
        frameBytes += length
        buffer = probe
        return arg
    }

    /// An inline command: one line split into words, with Redis's quoting rules.
    private func inlineCommand(_ buffer: inout ByteBuffer) throws -> RESPCommand? {
        let view = buffer.readableBytesView
        guard let newline = view.firstIndex(of: UInt8(ascii: "\n")) else {
            // A CR whose LF has not arrived yet is not part of the line: the limit must not
            // depend on how TCP splits the stream (found by fuzz-resp).
            let pending = view.last == UInt8(ascii: "\r") ? view.count - 1 : view.count
            if pending > maxInlineBytes {
                throw RESPProtocolError(message: "too big inline request")
            }
            return nil
        }
        var end = newline
        if end > view.startIndex, view[end - 1] == UInt8(ascii: "\r") { end -= 1 }
        guard end - view.startIndex <= maxInlineBytes else {
            throw RESPProtocolError(message: "too big inline request")
        }
        let words = try Self.splitArguments(Array(view[view.startIndex..<end]))
        // An inline line obeys the argument limit too (before AUTH: 10), as a multibulk does.
        guard words.count <= maxArguments else { throw RESPProtocolError(message: prefix + "multibulk length") }
        buffer.moveReaderIndex(forwardBy: newline - view.startIndex + 1)
        return RESPCommand(arguments: words.map { ByteBuffer(bytes: $0) })
    }

    /// Splits a line as redis-cli and Redis's inline parser do: spaces separate words; "..."
    /// allows \n \r \t \b \a \\ \" and \xHH escapes; '...' allows only \'.
    public static func splitArguments(_ line: [UInt8]) throws -> [[UInt8]] {
        var words: [[UInt8]] = []
        var i = 0
        func isSpace(_ c: UInt8) -> Bool { c == 32 || c == 9 || c == 10 || c == 13 || c == 11 || c == 12 }
        // A closing quote must be followed by a space or the end.
        func closesWord(at i: Int) throws -> Bool {
            if i + 1 < line.count, !isSpace(line[i + 1]) { throw RESPProtocolError(message: "unbalanced quotes in request") }
            return true
        }
        func hex(_ c: UInt8) -> Int? {
            switch c {
            case 48...57: return Int(c - 48)
            case 97...102: return Int(c - 87)
            case 65...70: return Int(c - 55)
            default: return nil
            }
        }
        while i < line.count {
            while i < line.count, isSpace(line[i]) { i += 1 }
            guard i < line.count else { break }
            var word: [UInt8] = []
            var inDouble = false, inSingle = false, done = false
            while !done {
                if inDouble {
                    guard i < line.count else { throw RESPProtocolError(message: "unbalanced quotes in request") }
                    let c = line[i]
                    if c == UInt8(ascii: "\\"), i + 3 < line.count, line[i + 1] == UInt8(ascii: "x"),
                       let h = hex(line[i + 2]), let l = hex(line[i + 3]) {
                        word.append(UInt8(h * 16 + l)); i += 3
                    } else if c == UInt8(ascii: "\\"), i + 1 < line.count {
                        i += 1
                        switch line[i] {
                        case UInt8(ascii: "n"): word.append(10)
                        case UInt8(ascii: "r"): word.append(13)
                        case UInt8(ascii: "t"): word.append(9)
                        case UInt8(ascii: "b"): word.append(8)
                        case UInt8(ascii: "a"): word.append(7)
                        default: word.append(line[i])
                        }
                    } else if c == UInt8(ascii: "\"") {
                        done = try closesWord(at: i)
                    } else {
                        word.append(c)
                    }
                } else if inSingle {
                    guard i < line.count else { throw RESPProtocolError(message: "unbalanced quotes in request") }
                    let c = line[i]
                    if c == UInt8(ascii: "\\"), i + 1 < line.count, line[i + 1] == UInt8(ascii: "'") {
                        word.append(UInt8(ascii: "'")); i += 1
                    } else if c == UInt8(ascii: "'") {
                        done = try closesWord(at: i)
                    } else {
                        word.append(c)
                    }
                } else {
                    if i >= line.count { break }
                    let c = line[i]
                    if isSpace(c) { done = true; continue }
                    if c == UInt8(ascii: "\"") { inDouble = true }
                    else if c == UInt8(ascii: "'") { inSingle = true }
                    else { word.append(c) }
                }
                if i < line.count { i += 1 }
            }
            words.append(word)
        }
        return words
    }

    static func printable(_ c: UInt8) -> String {
        let hex = Array("0123456789abcdef")
        return (32..<127).contains(c) ? String(UnicodeScalar(c)) : "\\x\(hex[Int(c >> 4)])\(hex[Int(c & 15)])"
    }
}
