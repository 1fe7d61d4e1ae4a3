// LinkSocket: the blocking TCP client under ReplicaLink: RESP commands out; lines, file
// bodies and raw stream bytes in, with a read-ahead buffer and timeouts.
// Errors are LinkError naming what failed. Threads: one thread at a time (the link's);
// `fd` may be shut down from another thread to interrupt it.
import Foundation

#if canImport(Glibc)
import Glibc
#endif

final class LinkSocket {
    let fd: Int32
    private var pending: [UInt8] = []
    private var chunk = [UInt8](repeating: 0, count: 1 << 20)
    private var closed = false

    init(host: String, port: Int) throws {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let first = result else {
            throw LinkError("cannot resolve \(host)")
        }
        defer { freeaddrinfo(result) }
        let s = socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
        guard s >= 0 else { throw LinkError("cannot make a socket: \(String(cString: strerror(errno)))") }
        // Linux bounds connect() by the send timeout.
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard connect(s, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            let why = String(cString: strerror(errno))
            Glibc.close(s)
            throw LinkError("cannot connect to \(host):\(port): \(why)")
        }
        timeout.tv_sec = 30
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        fd = s
    }

    func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }

    func send(_ words: [String]) throws {
        var out = Array("*\(words.count)\r\n".utf8)
        for w in words { out += Array("$\(w.utf8.count)\r\n\(w)\r\n".utf8) }
        var done = 0
        while done < out.count {
            let n = out.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + done, out.count - done, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw LinkError("cannot send to the primary: \(String(cString: strerror(errno)))") }
            done += n
        }
    }

    /// Sends a command and checks that its reply line starts with `expect`.
    func command(_ words: [String], expect: String, or alternative: String? = nil) throws {
        try send(words)
        let reply = try line(timeout: 30)
        guard reply.hasPrefix(expect) || alternative.map(reply.hasPrefix) == true else {
            throw LinkError("the primary answered \(words[0]) with \(reply.prefix(120))")
        }
    }

    /// The next non-empty line, without its line break.
    func line(timeout: Double) throws -> String {
        while true {
            if let nl = pending.firstIndex(of: 10) {
                var text = pending[..<nl]
                if text.last == 13 { text = text.dropLast() }
                pending.removeFirst(nl + 1)
                if text.isEmpty { continue }
                return String(decoding: text, as: UTF8.self)
            }
            guard pending.count < 1 << 16 else { throw LinkError("a line longer than 64 KiB from the primary") }
            guard try fill(timeout: timeout) else { throw LinkError("no reply from the primary in \(Int(timeout)) s") }
        }
    }

    /// Writes the next `size` bytes into a new file at `path`, fsynced.
    func receive(_ size: Int, into path: String, progress: (Int) -> Void) throws {
        let out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard out >= 0 else { throw LinkError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { Glibc.close(out) }
        var left = size
        while left > 0 {
            if pending.isEmpty {
                guard try fill(timeout: ReplicaLink.timeoutSeconds) else { throw LinkError("the primary stopped sending the snapshot") }
            }
            let n = min(left, pending.count)
            var done = 0
            while done < n {
                let w = pending.withUnsafeBytes { Glibc.write(out, $0.baseAddress! + done, n - done) }
                if w < 0 && errno == EINTR { continue }
                guard w > 0 else { throw LinkError("cannot write \(path): \(String(cString: strerror(errno)))") }
                done += w
            }
            pending.removeFirst(n)
            left -= n
            progress(n)
        }
        guard fsync(out) == 0 else { throw LinkError("cannot sync \(path)") }
    }

    /// Moves what has arrived (waiting at most `timeout` seconds for something) into `buffer`;
    /// the number of bytes added (0: nothing came).
    func readAvailable(into buffer: inout [UInt8], timeout: Double) throws -> Int {
        if pending.isEmpty { _ = try fill(timeout: timeout) }
        let n = pending.count
        buffer += pending
        pending.removeAll(keepingCapacity: true)
        return n
    }

    /// Reads once into `pending`; false on timeout. Throws when the primary closed the link.
    private func fill(timeout: Double) throws -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&p, 1, Int32(timeout * 1000))
        if ready < 0 && errno == EINTR { return false }
        guard ready > 0 else { return false }
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 1 << 20, 0) }
        if n < 0 && (errno == EINTR || errno == EAGAIN) { return false }
        guard n > 0 else { throw LinkError(n == 0 ? "the primary closed the link" : "cannot read from the primary: \(String(cString: strerror(errno)))") }
        pending += chunk[..<n]
        return true
    }
}
