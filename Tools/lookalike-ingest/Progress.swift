// Progress: a bar with rate and ETA on a terminal, a plain line every few seconds otherwise
// (cron, CI logs). Written to stderr so stdout keeps only the summary.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

final class Progress {
    let total: Int
    let started = Date()
    /// What is counted: "items" while loading, "items linked" while the index is built.
    let unit: String
    private let terminal = isatty(STDERR_FILENO) != 0
    private var lastDraw = Date.distantPast
    private let interval: TimeInterval

    init(total: Int, unit: String = "items") {
        self.total = total
        self.unit = unit
        interval = terminal ? 0.2 : 5
    }

    /// Runs `body` (a stage the tool waits for, such as building the index) while a thread
    /// draws the progress `measure` gives (done out of `total`; nil: not known at the moment).
    /// With nothing to count (`total` 0), just runs it.
    static func during<T>(total: Int, unit: String, measure: @escaping @Sendable () -> Int?,
                          _ body: () throws -> T) rethrows -> T {
        guard total > 0 else { return try body() }
        let progress = Progress(total: total, unit: unit)
        let stop = DispatchSemaphore(value: 0), stopped = DispatchSemaphore(value: 0)
        let box = UncheckedBox(progress)
        Thread.detachNewThread {
            var last = 0
            while stop.wait(timeout: .now() + 0.2) == .timedOut {
                if let done = measure() { last = done; box.value.update(done: done) }
            }
            box.value.finish(done: max(last, measure() ?? last))
            stopped.signal()
        }
        defer { stop.signal(); stopped.wait() }
        return try body()
    }

    func update(done: Int, force: Bool = false) {
        let now = Date()
        guard force || now.timeIntervalSince(lastDraw) >= interval else { return }
        lastDraw = now
        let seconds = max(1e-9, now.timeIntervalSince(started))
        let rate = Double(done) / seconds
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let share = total > 0 ? Double(done) / Double(total) : 1
        let figures = "\(done)/\(total) \(Int(rate)) \(unit)/s ETA \(Self.clock(eta))"
        if terminal {
            let width = 30
            let filled = Int(share * Double(width))
            let bar = String(repeating: "=", count: filled) + (filled < width ? ">" : "") + String(repeating: " ", count: max(0, width - filled - 1))
            FileHandle.standardError.write(Data("\r[\(bar)] \(String(format: "%3.0f%%", share * 100)) \(figures)   ".utf8))
        } else {
            FileHandle.standardError.write(Data("progress \(String(format: "%.1f%%", share * 100)) \(figures)\n".utf8))
        }
    }

    func finish(done: Int) {
        update(done: done, force: true)
        if terminal { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return String(format: "%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60)
    }
}

/// Hands a non-Sendable value to the one thread that uses it meanwhile (Progress.during).
final class UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
