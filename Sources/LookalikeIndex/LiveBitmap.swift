// LiveBitmap: one bit per segment position, set while the item at that position is live.
//
// Owns: a fixed buffer of ceil(capacity/8) bytes, handed to FAISS as an IDSelectorBitmap.
// Invariants: bits only go from 1 to 0 (a position, once dead, stays dead; ids are never reused).
// Threads: any thread may `clear` while others read or search with the buffer. A search that
// races with a delete may or may not see it; one that starts after `clear` returns always does.
// The counts are approximate only while a clear is in flight.
import CFaiss
import Synchronization

public final class LiveBitmap: @unchecked Sendable {
    public let capacity: Int
    let bytes: UnsafeMutablePointer<UInt8>
    let byteCount: Int
    private let deadCounter = Atomic<Int>(0)
    private let liveBound = Atomic<Int>(0)   // positions below this were ever set live

    public init(capacity: Int) {
        self.capacity = capacity
        byteCount = max(1, (capacity + 7) / 8)
        bytes = .allocate(capacity: byteCount)
        bytes.initialize(repeating: 0, count: byteCount)
    }

    deinit { bytes.deallocate() }

    /// Marks positions [0, count) live. Called once per position, in order, before publishing.
    public func setLive(upTo count: Int) {
        require(count <= capacity, "live bits beyond the capacity")
        var p = liveBound.load(ordering: .acquiring)
        while p < count {
            bytes[p >> 3] |= UInt8(1 << (p & 7))
            p += 1
        }
        liveBound.store(count, ordering: .releasing)
    }

    public func isLive(_ position: Int) -> Bool {
        guard position >= 0, position < capacity else { return false }
        return (bytes[position >> 3] & UInt8(1 << (position & 7))) != 0
    }

    /// Clears a position's bit; returns false if it was already dead.
    @discardableResult
    public func clear(_ position: Int) -> Bool {
        guard position >= 0, position < capacity else { return false }
        guard lk_bitmap_clear_bit(bytes, position) != 0 else { return false }
        deadCounter.add(1, ordering: .relaxed)
        return true
    }

    public var deadCount: Int { deadCounter.load(ordering: .relaxed) }

    /// A FAISS selector bitmap of `size` positions (at least every position searched) with the
    /// bits of those of `positions` that are live now (a filter's members); nil when none is.
    public func selector(positions: [Int], size: Int) -> [UInt8]? {
        var bitmap = [UInt8](repeating: 0, count: max(1, (size + 7) / 8))
        var any = false
        for p in positions where isLive(p) {
            bitmap[p >> 3] |= UInt8(1 << (p & 7))
            any = true
        }
        return any ? bitmap : nil
    }

    /// The selector for FAISS, or nil when nothing is dead (no filtering is cheaper).
    public var selector: UnsafeRawBufferPointer? {
        deadCount == 0 ? nil : UnsafeRawBufferPointer(start: bytes, count: byteCount)
    }
}
