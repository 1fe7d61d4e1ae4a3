// Neighbor and TopK: how every search in Lookalike ranks and merges candidates.
//
// Invariant: internally a smaller `distance` is always closer (squared L2 as is; inner product
// and cosine negated), so one heap serves every metric. Ties break on the smaller id, which
// makes results deterministic across segments and runs.
// Threads: value types; no sharing.

public struct Neighbor: Sendable, Equatable {
    public var id: UInt64
    public var distance: Float
    public init(id: UInt64, distance: Float) {
        self.id = id
        self.distance = distance
    }

    @inline(__always)
    func isWorse(than other: Neighbor) -> Bool {
        distance > other.distance || (distance == other.distance && id > other.id)
    }
}

/// Keeps the k closest neighbours pushed so far (a bounded max-heap, worst on top).
public struct TopK {
    public let k: Int
    private(set) var heap: [Neighbor] = []

    public init(k: Int) {
        self.k = max(0, k)
        heap.reserveCapacity(self.k)
    }

    public var count: Int { heap.count }
    public var isFull: Bool { heap.count >= k }

    /// The distance a candidate must beat to enter once the heap is full.
    public var threshold: Float { isFull ? (heap.first?.distance ?? .infinity) : .infinity }

    public mutating func push(_ candidate: Neighbor) {
        guard k > 0 else { return }
        if heap.count < k {
            heap.append(candidate)
            siftUp(heap.count - 1)
        } else if heap[0].isWorse(than: candidate) {
            heap[0] = candidate
            siftDown(0)
        }
    }

    public mutating func push(contentsOf candidates: [Neighbor]) {
        for c in candidates { push(c) }
    }

    /// Best first.
    public func sorted() -> [Neighbor] {
        heap.sorted { $1.isWorse(than: $0) }
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[parent].isWorse(than: heap[child]) == false else { break }
            heap.swapAt(parent, child)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        let n = heap.count
        while true {
            let left = 2 * parent + 1
            guard left < n else { return }
            var worst = left
            let right = left + 1
            if right < n, heap[right].isWorse(than: heap[left]) { worst = right }
            guard heap[worst].isWorse(than: heap[parent]) else { return }
            heap.swapAt(parent, worst)
            parent = worst
        }
    }
}
