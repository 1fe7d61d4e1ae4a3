// ThreadInbox: the lock, the wake-up and the stop handshake of a queue that one thread of its
// own drains: BackgroundThread (the sealer's and the merger's jobs) and WriteQueue (the group
// commit). Both had the same ten lines of append-signal and stop-and-wait; they live here now.
//
// Owns: the items posted and not yet taken, and the two steps of stopping (asked, finished).
// Invariants:
//   - items are taken in the order they were posted, by the draining thread only;
//   - `stop` returns only once the draining thread has seen stop asked with nothing left
//     (`waitForItems` returned false): every item accepted before has been taken;
//   - what happens to an item posted after stop is asked is the owner's choice (`Late`):
//       `.queued`: accepted until the thread has finished, so it still runs on that thread;
//                  refused only after (BackgroundThread then runs the job on the caller);
//       `.refused`: refused as soon as stop is asked (WriteQueue fails the write `.closed`);
//   - one lock per post, one per `waitForItems` and one per `take`: nothing per item beyond
//     what the queues took before (the commit path gained no lock and no hop).
// What it does not hold: state the draining thread keeps in its own frame. WriteQueue's
// hand-over of non-Sendable writers (`adopt(_: sending)`) stays in WriteQueue, under this lock
// through `ifAccepting` and `take(max:alongside:)`, and the writers go on living in the commit
// thread's loop (CollectionWriter.swift); the inbox never sees them.
// Threads: `post`, `ifAccepting`, `stop` from any thread but the draining one (`stop` from it
// would wait for itself); `waitForItems`, `take`, `next` from the draining thread only.
import Foundation

final class ThreadInbox<Item>: @unchecked Sendable {
    /// What an item posted after `stop` was asked meets (see the header).
    enum Late { case queued, refused }

    private let condition = NSCondition()
    private let late: Late
    private var items: [Item] = []  // under `condition`, as are the two below
    private var stopping = false
    private var finished = false

    init(late: Late) { self.late = late }

    /// Under the lock: whether a post now would be accepted.
    private var accepting: Bool {
        switch late {
        case .queued: return !finished
        case .refused: return !stopping
        }
    }

    /// Queues `item` and wakes the draining thread; false (nothing queued) when the inbox no
    /// longer accepts items, and the caller deals with `item` itself.
    func post(_ item: Item) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard accepting else { return false }
        items.append(item)
        condition.signal()
        return true
    }

    /// Runs `body` under the inbox's lock if it still accepts items: for state that must move
    /// in step with the items (WriteQueue's writers, which precede their writes). Does not wake
    /// the draining thread.
    func ifAccepting(_ body: () -> Void) {
        condition.lock()
        defer { condition.unlock() }
        if accepting { body() }
    }

    /// Draining thread: waits until an item is queued or stop is asked. False when stop is
    /// asked and nothing is left: the thread must end (and `stop` returns).
    func waitForItems() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return waitLocked()
    }

    /// Draining thread: the oldest `max` items (or fewer), and what `alongside` returns, under
    /// one lock. After `waitForItems` returned true there is at least one.
    func take<Extra>(max: Int, alongside: () -> Extra) -> ([Item], Extra) {
        condition.lock()
        defer { condition.unlock() }
        let taken = Array(items.prefix(max))
        items.removeFirst(taken.count)
        return (taken, alongside())
    }

    /// Draining thread: waits for the next item and takes it, under one lock; nil when the
    /// thread must end (as `waitForItems` returning false).
    func next() -> Item? {
        condition.lock()
        defer { condition.unlock() }
        return waitLocked() ? items.removeFirst() : nil
    }

    /// Asks the draining thread to end once it has taken everything, and waits for that.
    /// `afterwards` runs under the lock once it has ended.
    func stop(afterwards: () -> Void = {}) {
        condition.lock()
        defer { condition.unlock() }
        stopping = true
        condition.broadcast()
        while !finished { condition.wait() }
        afterwards()
    }

    /// `waitForItems` with the lock held.
    private func waitLocked() -> Bool {
        while items.isEmpty && !stopping { condition.wait() }
        guard items.isEmpty else { return true }
        finished = true
        condition.broadcast()
        return false
    }
}
