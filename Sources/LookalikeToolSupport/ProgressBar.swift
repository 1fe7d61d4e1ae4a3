// ProgressBar: the tools' progress display (lookalike-ingest's load and index build,
// lookalike-compact's compaction): a bar with rate and ETA on a terminal, a plain line every
// few seconds otherwise (cron, CI logs). Written to stderr so stdout keeps only the summary.
// (Not "Progress": Foundation has one.)
//
// Owns: nothing shared; a ProgressBar is used by one thread (the loop that counts, or the watcher
// thread of `during`/`following`).
// Invariants: the rate and the ETA are measured from the ProgressBar's own start (one per total:
// a job whose total changes gets a new one); the first update and `finish` always draw.
// Threads: one thread per ProgressBar; `during`/`following` run their body on the caller's thread
// and draw from a watcher thread, joined before they return.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a watched job reports at one moment: its stage (nil: none), items done out of a total
/// (0: nothing counted yet, as in a stage such as training).
public struct ProgressReading: Sendable, Equatable {
    public var stage: String?
    public var done: Int
    public var total: Int
    public init(stage: String?, done: Int, total: Int) {
        self.stage = stage
        self.done = done
        self.total = total
    }
}

public final class ProgressBar {
    public let total: Int
    public let started = Date()
    /// What is counted: "items" while loading, "items linked" while the index is built.
    let unit: String
    private let terminal = isatty(STDERR_FILENO) != 0
    private var lastDraw = Date.distantPast
    private let interval: TimeInterval

    public init(total: Int, unit: String = "items") {
        self.total = total
        self.unit = unit
        interval = terminal ? 0.2 : 5
    }

    /// Runs `body` (a stage the tool waits for, such as building the index) while a thread
    /// draws the progress `measure` gives (done out of `total`; nil: not known at the moment).
    /// With nothing to count (`total` 0), just runs it.
    public static func during<T>(total: Int, unit: String, measure: @escaping @Sendable () -> Int?,
                                 _ body: () throws -> T) rethrows -> T {
        guard total > 0 else { return try body() }
        return try following(unit: unit, measure: { _ in measure().map { ProgressReading(stage: nil, done: $0, total: total) } }, body)
    }

    /// Runs `body` while a thread draws a job whose stage and total change as it goes (a
    /// compaction): `measure(finished)` gives its reading now (nil: not known at the moment);
    /// `finished` is true for the last call, made once `body` has returned. A new total starts a
    /// new bar; a stage with nothing counted yet shows as its name and the time spent.
    public static func following<T>(unit: String, measure: @escaping @Sendable (_ finished: Bool) -> ProgressReading?,
                                    _ body: () throws -> T) rethrows -> T {
        let stop = DispatchSemaphore(value: 0), stopped = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            let watcher = Watcher(unit: unit)
            while stop.wait(timeout: .now() + 0.2) == .timedOut {
                if let r = measure(false) { watcher.show(r) }
            }
            watcher.finish(measure(true))
            stopped.signal()
        }
        defer { stop.signal(); stopped.wait() }
        return try body()
    }

    /// Draws `done` (and the stage, if any) when the interval has passed, or when forced.
    public func update(done: Int, stage: String? = nil, force: Bool = false) {
        let now = Date()
        guard force || now.timeIntervalSince(lastDraw) >= interval else { return }
        lastDraw = now
        let seconds = max(1e-9, now.timeIntervalSince(started))
        let rate = Double(done) / seconds
        // Nothing counted yet: no rate, so no estimate (not "0:00:00").
        let eta = rate > 0 ? Self.clock(Double(total - done) / rate) : "?"
        let share = total > 0 ? Double(done) / Double(total) : 1
        let figures = "\(done)/\(total) \(Int(rate)) \(unit)/s ETA \(eta)" + (stage.map { " (\($0))" } ?? "")
        if terminal {
            let width = 30
            let filled = Int(share * Double(width))
            let bar = String(repeating: "=", count: filled) + (filled < width ? ">" : "") + String(repeating: " ", count: max(0, width - filled - 1))
            write("\r[\(bar)] \(String(format: "%3.0f%%", share * 100)) \(figures)   ")
        } else {
            write("progress \(String(format: "%.1f%%", share * 100)) \(figures)\n")
        }
    }

    public func finish(done: Int, stage: String? = nil) {
        update(done: done, stage: stage, force: true)
        if terminal { write("\n") }
    }

    /// A stage with nothing counted: its name and the time spent in it, drawn as `update` draws.
    func idle(stage: String, since: Date, force: Bool) {
        let now = Date()
        guard force || now.timeIntervalSince(lastDraw) >= interval else { return }
        lastDraw = now
        let text = "\(stage), \(Self.clock(now.timeIntervalSince(since))) elapsed"
        write(terminal ? "\r\(text)   " : "progress \(text)\n")
    }

    public static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return String(format: "%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60)
    }

    private func write(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }
}

/// The watcher thread's state in `ProgressBar.following`: the bar of the current total, and the
/// stages seen (a stage's first reading is drawn at once; a job that alternates between two
/// stages, as a compaction reads and builds, is not redrawn at every turn).
private final class Watcher {
    let unit: String
    var bar: ProgressBar?
    var idle: ProgressBar?
    var last: ProgressReading?
    var seen: Set<String> = []
    var stageStarted = Date()

    init(unit: String) { self.unit = unit }

    func show(_ r: ProgressReading) {
        let fresh = r.stage.map { seen.insert($0).inserted } ?? false
        if r.stage != last?.stage { stageStarted = Date() }
        defer { last = r }
        guard r.total > 0 else {
            if let stage = r.stage {
                idle = idle ?? ProgressBar(total: 0, unit: unit)
                idle?.idle(stage: stage, since: stageStarted, force: fresh)
            }
            return
        }
        if bar?.total != r.total {
            if let bar, let last { bar.finish(done: last.done, stage: last.stage) }
            bar = ProgressBar(total: r.total, unit: unit)
        }
        bar?.update(done: r.done, stage: r.stage, force: fresh)
    }

    /// The last reading, drawn; `final` (nil: unknown) never moves `done` back.
    func finish(_ final: ProgressReading?) {
        var r = final ?? last
        if let f = final, let l = last, f.total == l.total { r?.done = max(f.done, l.done) }
        guard let r, r.total > 0 else { return }
        if bar?.total != r.total { bar = ProgressBar(total: r.total, unit: unit) }
        bar?.finish(done: r.done, stage: nil)
    }
}

/// Hands a non-Sendable value to the one thread that uses it meanwhile (ProgressBar.during).
public final class UncheckedBox<T>: @unchecked Sendable {
    public let value: T
    public init(_ value: T) { self.value = value }
}
