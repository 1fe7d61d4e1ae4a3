// SystemdNotify: sd_notify(3) for Type=notify units (Tools/lookalike.service): READY=1 once the
// RESP port listens, STOPPING=1 when shutdown begins. A datagram to the unix socket named by
// $NOTIFY_SOCKET (a path, or an abstract name written with a leading '@'); nothing when the
// variable is unset (not run by systemd). Failures are ignored: readiness is a courtesy to
// the service manager, never a reason to stop serving.
// Threads: any.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

enum SystemdNotify {
    static func send(_ state: String) {
        guard let path = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"], !path.isEmpty else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }  // abstract namespace
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { return }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in raw.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))
        let message = Array(state.utf8)
        _ = withUnsafePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                message.withUnsafeBytes { sendto(fd, $0.baseAddress, message.count, 0, sa, length) }
            }
        }
    }
}
