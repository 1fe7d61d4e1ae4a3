// CategoryTraining: when a collection's category model (CategoryModel) is fitted, how its blend
// with the neighbour vote is chosen, and where it is kept.
//
// Owns: the engine's trainer (one low-priority thread at a time, never the event loop, the
// commit thread or the search pool) and the fit. The stored model, each collection's current
// predictor and what VINFO says of it are CategoryPredictor.swift.
// When: lazily. A prediction (VPREDICT, CATEGORY AUTO) that finds no attempt yet, or a collection
// grown by `categoryModelRetrainFraction` since the last one (counted in ids: new vectors), asks
// the trainer for a fit and answers with what it has meanwhile. So a collection nobody predicts
// on never pays, and the seal and merge paths are left alone. A restart loads the stored model
// (and the id mark it was trained at) and does not retrain.
// How (one LMDB snapshot): the items with a category (views left out: they mirror an item); a
// seeded sample of at most `categoryModelMaxItems`; a held-out fifth (at most 2,000) of them.
// For each λ in a small grid the model is fitted on the rest; the held-out items' neighbour vote
// (each left out of its own, as a new item would be) and model probabilities are blended as
// w·model + (1 − w)·vote for w in 0, 0.05 … 1; the best (λ, w) by held-out accuracy wins and the
// model is fitted again on every sampled item. Too few labelled items or a single category keep
// the vote, and say so (VINFO).
// Threads: `trainCategoryModel` blocks its caller (seconds: tests and benchmarks call it; the
// trainer's thread otherwise); `categoryPredictor` and `categoryPredictorStatus` from any thread:
// they copy the current predictor under the state's lock and compute outside it.
import Dispatch
import Foundation
import Logging
import LookalikeFormats
import LookalikeIndex
import LookalikeStorage
import Synchronization

/// Runs fits one at a time, on a thread of its own at low priority (nice 10): building indexes
/// and answering queries come first on 2 cores.
final class CategoryTrainer: @unchecked Sendable {
    private let lock = NSLock()
    private var queue: [Collection] = []
    private var running = false
    private var stopped = false
    private let group = DispatchGroup()

    var isStopped: Bool { lock.withLock { stopped } }

    /// False once the engine is closing.
    func schedule(_ c: Collection) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped else { return false }
        if !queue.contains(where: { $0 === c }) { queue.append(c) }
        guard !running else { return true }
        running = true
        group.enter()
        let thread = Thread { [self] in
            setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)  // this thread only (Linux)
            drain()
        }
        thread.name = "lookalike-category-model"
        thread.start()
        return true
    }

    private func drain() {
        while true {
            lock.lock()
            guard !stopped, !queue.isEmpty else {
                running = false
                lock.unlock()
                group.leave()
                return
            }
            let c = queue.removeFirst()
            lock.unlock()
            c.trainInBackground { [self] in isStopped }
        }
    }

    /// Cancels queued fits, stops a running one at its next mini-batch, and waits for it.
    func stop() {
        lock.withLock {
            stopped = true
            queue.removeAll()
        }
        group.wait()
    }
}

extension Collection {
    /// Neighbours in the vote, unless a query says otherwise (VPREDICT … COUNT n).
    public static let defaultVoteNeighbours = 20
    /// λ tried for the fit: a small grid, chosen on held-out items.
    static let categoryLambdas: [Float] = [1e-4, 1e-3, 1e-2]
    /// Temperatures tried for the model's probabilities in the blend.
    static let categoryTemperatures: [Double] = [0.5, 1, 2, 4]
    /// Held-out items at most: each costs one search for its vote.
    static let maxHeldOut = 2_000

    // MARK: - Training (the trainer's thread, or a caller that waits)

    /// Fits and stores the collection's category model now, and makes it current; returns
    /// what VINFO will report. The vote stays (and the reason is returned) when there are too
    /// few labelled items or a single category.
    @discardableResult
    public func trainCategoryModel() throws -> CategoryPredictorStatus {
        try trainCategoryModel(cancelled: { false })
        return categoryPredictorStatus()
    }

    /// The trainer's entry: errors are logged and noted, never thrown at a query.
    func trainInBackground(cancelled: () -> Bool) {
        do { try trainCategoryModel(cancelled: cancelled) } catch is CategoryModel.Cancelled {
            categoryModel.withLock { $0.training = false }
        } catch {
            engine.logger.warning("category model training failed", metadata: ["collection": "\(name)", "error": "\(error)"])
            categoryModel.withLock { s in
                s.training = false
                s.fallback = "training failed (\(error)); retried when the collection grows"
            }
        }
    }

    private func trainCategoryModel(cancelled: () -> Bool) throws {
        let started = DispatchTime.now()
        let mark = idHighWaterMark
        func keepVote(_ why: String) {
            categoryModel.withLock { s in
                s.loaded = true
                s.training = false
                s.attemptedAt = mark
                s.fallback = why
            }
        }
        let o = engine.options
        guard o.categoryModel, !isDropped else { return keepVote("the category model is off (--category-model false)") }
        let data = try labelledSample(limit: o.categoryModelMaxItems)
        guard data.labelled >= max(2, o.categoryModelMinItems) else {
            return keepVote("\(data.labelled) items have a category; a model needs \(max(2, o.categoryModelMinItems)) (--category-model-min-items)")
        }
        guard data.classes.count >= 2 else { return keepVote("every item with a category has the same one ('\(data.classes[0])')") }
        let choice = try chooseBlend(data, cancelled: cancelled)
        let model = try data.rows.withUnsafeBufferPointer {
            try CategoryModel.fit($0.baseAddress!, rows: data.keys.count, dimension: definition.dimension, labels: data.labels,
                                  classes: data.classes, .init(lambda: choice.lambda), cancelled: cancelled)
        }
        let info = StoredCategoryModel(
            attribute: "category", classes: data.classes, dimension: definition.dimension, weights: model.weightBytes,
            blendWeight: choice.weight, temperature: choice.temperature, lambda: Double(choice.lambda), labelledItems: data.labelled, heldOutItems: choice.heldOut,
            voteAccuracy: choice.vote, modelAccuracy: choice.model, blendAccuracy: choice.blend,
            neighbours: Self.defaultVoteNeighbours, highWater: mark,
            seconds: Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9)
        guard try storeCategoryModel(info) else { return }  // dropped meanwhile
        categoryModel.withLock { s in
            s.loaded = true
            s.training = false
            s.attemptedAt = mark
            s.fallback = nil
            s.predictor = CategoryPredictor(model: model, info: info)
        }
        engine.logger.info("trained category model", metadata: [
            "collection": "\(name)", "items": "\(data.labelled)", "classes": "\(data.classes.count)",
            "held-out accuracy": "\(String(format: "vote %.3f, model %.3f, blend %.3f (w %.2f)", choice.vote, choice.model, choice.blend, choice.weight))",
            "seconds": "\(String(format: "%.1f", info.seconds))"])
    }

    /// The items with a category, in a seeded random order, as the index stores their vectors.
    struct LabelledSample {
        var keys: [String] = []
        var labels: [Int32] = []
        /// keys.count × dimension.
        var rows: [Float] = []
        var classes: [String] = []
        /// Labelled items in the collection (the sample holds at most the limit).
        var labelled = 0
    }

    func labelledSample(limit: Int) throws -> LabelledSample {
        try wrapped {
            try engine.environment.read { txn in
                var found: [(id: UInt64, key: String, label: String)] = []
                try store.forEachItem(txn) { id, r in
                    guard Views.split(r.key).view == nil,
                          let label = Attributes(r.attributes)?.indexedTexts("category").first else { return }
                    found.append((id, r.key, label))
                }
                var out = LabelledSample(labelled: found.count)
                out.classes = Array(Set(found.map(\.label))).sorted()
                var rng = SeededRandom(seed: 0xCA7E_6081)
                for i in stride(from: found.count - 1, to: 0, by: -1) { found.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
                let index = Dictionary(uniqueKeysWithValues: out.classes.enumerated().map { ($1, Int32($0)) })
                out.rows.reserveCapacity(min(limit, found.count) * definition.dimension)
                for f in found.prefix(limit) {
                    guard let v = try store.vector(f.id, txn) else { continue }
                    out.rows += try preparedVector(v)
                    out.keys.append(f.key)
                    out.labels.append(index[f.label]!)
                }
                return out
            }
        }
    }

    struct BlendChoice {
        var lambda: Float
        var weight: Double
        var temperature = 1.0
        var vote: Double
        var blend: Double
        var heldOut: Int
        var model: Double
    }

    /// The (λ, w) with the best held-out accuracy: the sample's first fifth (at most 2,000) is
    /// held out, each item voted on by its neighbours without itself, the model fitted on the rest.
    private func chooseBlend(_ data: LabelledSample, cancelled: () -> Bool) throws -> BlendChoice {
        let n = data.keys.count, d = definition.dimension, c = data.classes.count
        let held = min(Self.maxHeldOut, max(1, n / 5))
        let column = Dictionary(uniqueKeysWithValues: data.classes.enumerated().map { ($1, $0) })
        var votes = [Double](repeating: 0, count: held * c)
        for i in 0..<held {
            if cancelled() { throw CategoryModel.Cancelled() }
            // An item removed since the snapshot has no vote: the model alone answers for it.
            let vote = (try? voteDistribution(.key(data.keys[i]), attribute: "category", neighbours: Self.defaultVoteNeighbours)) ?? [:]
            for (category, p) in vote { if let j = column[category] { votes[i * c + j] = p } }
        }
        let truth = Array(data.labels[0..<held])
        var best = BlendChoice(lambda: Self.categoryLambdas[0], weight: 0, vote: 0, blend: -1, heldOut: held, model: 0)
        for lambda in Self.categoryLambdas {
            let probabilities = try data.rows.withUnsafeBufferPointer { rows -> [Float] in
                let training = rows.baseAddress! + held * d
                let model = try CategoryModel.fit(training, rows: n - held, dimension: d, labels: Array(data.labels[held...]),
                                                  classes: data.classes, .init(lambda: lambda), cancelled: cancelled)
                return model.probabilities(rows: rows.baseAddress!, count: held)
            }
            for temperature in Self.categoryTemperatures {
                let tempered = CategoryModel.tempered(probabilities, classes: c, temperature: temperature)
                for step in 0...20 {
                    let w = Double(step) / 20
                    let accuracy = Self.accuracy(truth, classes: c) { i, j in w * Double(tempered[i * c + j]) + (1 - w) * votes[i * c + j] }
                    if step == 0 { best.vote = accuracy }
                    if accuracy > best.blend {
                        best = BlendChoice(lambda: lambda, weight: w, temperature: temperature, vote: best.vote, blend: accuracy, heldOut: held,
                                           model: Self.accuracy(truth, classes: c) { i, j in Double(probabilities[i * c + j]) })
                    }
                }
            }
        }
        return best
    }

    /// Share of rows whose highest score is their label's.
    static func accuracy(_ truth: [Int32], classes c: Int, score: (Int, Int) -> Double) -> Double {
        var right = 0
        for (i, label) in truth.enumerated() {
            var top = 0
            for j in 1..<c where score(i, j) > score(i, top) { top = j }
            if top == Int(label) { right += 1 }
        }
        return Double(right) / Double(max(1, truth.count))
    }
}
