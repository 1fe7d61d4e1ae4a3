// fuzz-resp: RESPDecoder.next(_:) on arbitrary bytes (Docs/fuzzing.md).
//
// Input: byte 0 picks the limits (bit 0: tight ones the fuzzer can reach, or the server's
// defaults; bit 1: a connection before AUTH, with its smaller limits) and byte 1 seeds the
// chunk sizes; the rest is the stream a client sent.
// Checks, beyond "never crashes":
//   - every command returned keeps the limits (argument count, bulk size, frame size);
//   - the stream fed in chunks decodes to the same commands and the same error as fed whole;
//   - the commands, written back as RESP arrays, decode to themselves.
import FuzzSupport
import LookalikeProtocol
import NIOCore

/// Tight limits: an inline line of 120 bytes has at most 60 words (before AUTH: 32 bytes, 16
/// words), so inline commands stay within the argument and bulk limits too (the decoder does
/// not count inline words against them).
let tight: ProtocolLimits = {
    var l = ProtocolLimits()
    l.maxBulkBytes = 128
    l.maxArguments = 64
    l.maxInlineBytes = 120
    l.maxFrameBytes = 256
    l.unauthenticatedArguments = 16
    l.unauthenticatedBytes = 32
    return l
}()

struct Outcome: Equatable {
    var commands: [[[UInt8]]] = []
    var error: String?
}

func bytes(_ command: RESPCommand) -> [[UInt8]] { command.arguments.map { Array($0.readableBytesView) } }

/// Decodes the stream, appending it `chunks` at a time (nil: all at once); `keepCRLF` never
/// ends a chunk between a CR and its LF.
func decode(_ stream: ArraySlice<UInt8>, limits: ProtocolLimits, authenticated: Bool, chunks: [Int]?,
            keepCRLF: Bool = false) -> Outcome {
    var decoder = RESPDecoder(limits: limits, auth: ConnectionAuth(isAuthenticated: authenticated))
    var buffer = ByteBuffer()
    var out = Outcome()
    var start = stream.startIndex
    var turn = 0
    while start < stream.endIndex {
        let size = chunks.map { $0[turn % $0.count] } ?? stream.count
        var end = min(stream.endIndex, start + size)
        if keepCRLF, end < stream.endIndex, stream[end - 1] == 13, stream[end] == 10 { end += 1 }
        buffer.writeBytes(stream[start..<end])
        start = end
        turn += 1
        do {
            while let command = try decoder.next(&buffer) {
                out.commands.append(bytes(command))
                if out.commands.count > 10_000 { return out }
            }
        } catch {
            out.error = "\(error)"
            return out
        }
        buffer.discardReadBytes()
    }
    return out
}

func check(_ command: [[UInt8]], _ limits: ProtocolLimits, authenticated: Bool) {
    let maxArguments = authenticated ? limits.maxArguments : limits.unauthenticatedArguments
    let maxBulkBytes = authenticated ? limits.maxBulkBytes : limits.unauthenticatedBytes
    require(!command.isEmpty, "an empty command was returned")
    require(command.count <= maxArguments, "\(command.count) arguments > the limit \(maxArguments)")
    var total = 0
    for arg in command {
        require(arg.count <= maxBulkBytes, "an argument of \(arg.count) bytes > the limit \(maxBulkBytes)")
        total += arg.count
    }
    require(total <= limits.maxFrameBytes, "a command of \(total) bytes > maxFrameBytes \(limits.maxFrameBytes)")
}

fuzzMain { input in
    guard input.count >= 2 else { return }
    let limits = input[0] & 1 == 0 ? tight : ProtocolLimits()
    // Before AUTH only with the tight limits: with the server's, an inline line (16 KiB) may
    // hold more words than unauthenticatedArguments (10), which the decoder does not count.
    let authenticated = input[0] & 2 == 0 || input[0] & 1 == 1
    // Chunk sizes 1...16 from a small linear congruential sequence seeded by byte 1.
    var state = UInt32(input[1]) &+ 1
    let chunks = (0..<8).map { _ -> Int in
        state = state &* 1_103_515_245 &+ 12_345
        return Int((state >> 16) % 16) + 1
    }
    let stream = Array(input[2...])[...]

    let whole = decode(stream, limits: limits, authenticated: authenticated, chunks: nil)
    for command in whole.commands { check(command, limits, authenticated: authenticated) }

    // An inline line at the limit split between its CR and LF was refused (fixed, RESPDecoderTests).
    let chunked = decode(stream, limits: limits, authenticated: authenticated, chunks: chunks)
    require(chunked.commands == whole.commands,
                 "fed in chunks \(chunks): \(chunked.commands.count) commands, whole: \(whole.commands.count)")
    require((chunked.error == nil) == (whole.error == nil),
                 "fed in chunks \(chunks): error \(chunked.error ?? "none"); whole: \(whole.error ?? "none")")

    // Round trip: the commands as RESP arrays decode to the same commands.
    var encoded: [UInt8] = []
    for command in whole.commands {
        encoded += Array("*\(command.count)\r\n".utf8)
        for arg in command { encoded += Array("$\(arg.count)\r\n".utf8) + arg + [13, 10] }
    }
    let again = decode(encoded[...], limits: limits, authenticated: authenticated, chunks: nil)
    require(again.error == nil && again.commands == whole.commands, "re-encoded commands decode differently: \(again.error ?? "")")
}
