// CategoryPredictor: a collection's category model once fitted (CategoryTraining.swift): its
// stored form (meta key category-model:<N>, JSON: the weights and the blend with the
// neighbour vote chosen on held-out items), the predictor queries use (`categoryModel` in
// Collection), and what VINFO says of it.
// Invariants: the stored model is loaded once, at the first use after open, and never
// retrained by a restart (its id mark says when it was fitted); a model that cannot be read,
// or of another dimension or version, is refitted, never fatal (the items are all in LMDB); a
// fit is asked for when none was attempted or the collection grew by
// `categoryModelRetrainFraction`, and never waited for.
// Threads: any; the state is copied under its lock and used outside it. Storing runs on the
// trainer's thread.
import Foundation
import LookalikeStorage

/// A fitted model with how it blends, as stored.
struct StoredCategoryModel: Codable, Equatable {
    var version = 1
    var attribute: String
    var classes: [String]
    var dimension: Int
    /// Weights then bias, little-endian float32.
    var weights: Data
    /// The model's share of the blend (0: the vote alone, 1: the model alone).
    var blendWeight: Double
    /// The model's probabilities are raised to 1/temperature (and renormalised) before the
    /// blend: a linear model's confidence and the vote's are on different scales.
    var temperature: Double = 1
    var lambda: Double
    var labelledItems: Int
    var heldOutItems: Int
    var voteAccuracy: Double
    var modelAccuracy: Double
    var blendAccuracy: Double
    /// Neighbours in the vote the blend was chosen with.
    var neighbours: Int
    /// The collection's id mark when its snapshot was read.
    var highWater: UInt64
    var seconds: Double

    static let version = 1
}

/// A collection's model, ready to predict with.
struct CategoryPredictor: Sendable {
    let model: CategoryModel
    let info: StoredCategoryModel
}

/// What VINFO reports about a collection's category predictor.
public struct CategoryPredictorStatus: Sendable, Equatable {
    /// "blend", "model" or "vote".
    public var predictor: String
    /// Why the vote is used, or how the predictor was chosen.
    public var note: String
    public var classes = 0
    public var labelledItems = 0
    public var heldOutItems = 0
    /// Held-out accuracy of the vote, the model alone and the chosen blend; nil until trained.
    public var voteAccuracy: Double?
    public var modelAccuracy: Double?
    public var blendAccuracy: Double?
    public var blendWeight = 0.0
    public var lambda = 0.0
    public var seconds = 0.0
    public var training = false
}

/// A collection's predictor state (Collection.categoryModel).
struct CategoryModelState {
    var loaded = false
    var predictor: CategoryPredictor?
    /// Why there is no model, after an attempt that kept the vote.
    var fallback: String?
    var training = false
    /// The id mark of the last attempt (or of the stored model's snapshot).
    var attemptedAt: UInt64?
}

extension Collection {
    // MARK: - The current predictor (any thread)

    /// The model to predict with, if any; asks the trainer for a fit when none was attempted
    /// or the collection has grown enough since. Never waits for one.
    func categoryPredictor() -> CategoryPredictor? {
        loadCategoryModelIfNeeded()
        let o = engine.options
        guard o.categoryModel else { return nil }
        let mark = idHighWaterMark
        let (predictor, start) = categoryModel.withLock { s -> (CategoryPredictor?, Bool) in
            var due = true
            if let at = s.attemptedAt {
                let base = Double(max(s.predictor?.info.labelledItems ?? 0, o.categoryModelMinItems))
                due = mark >= at + UInt64(max(1, (base * o.categoryModelRetrainFraction).rounded(.up)))
            }
            guard due, !s.training else { return (s.predictor, false) }
            s.training = true
            return (s.predictor, true)
        }
        if start && !engine.categoryTrainer.schedule(self) { categoryModel.withLock { $0.training = false } }
        return predictor
    }

    /// What predicts, and how well it did on held-out items (VINFO). Starts no fit.
    public func categoryPredictorStatus() -> CategoryPredictorStatus {
        loadCategoryModelIfNeeded()
        let s = categoryModel.withLock { $0 }
        guard engine.options.categoryModel else {
            return CategoryPredictorStatus(predictor: "vote", note: "the category model is off (--category-model false)")
        }
        guard let p = s.predictor else {
            let note = s.fallback ?? (s.training ? "no model yet: training in the background"
                                                 : "no model yet: the first VPREDICT or CATEGORY AUTO starts training")
            return CategoryPredictorStatus(predictor: "vote", note: note, training: s.training)
        }
        let i = p.info
        let (name, note): (String, String) = switch i.blendWeight {
        case 0: ("vote", "the model did not beat the vote on held-out items")
        case 1: ("model", "the model alone beat every blend with the vote on held-out items")
        default: ("blend", String(format: "%.2f × model (temperature %g) + %.2f × vote, chosen on held-out items", i.blendWeight, i.temperature, 1 - i.blendWeight))
        }
        return CategoryPredictorStatus(predictor: name, note: note, classes: i.classes.count, labelledItems: i.labelledItems,
                                       heldOutItems: i.heldOutItems, voteAccuracy: i.voteAccuracy, modelAccuracy: i.modelAccuracy,
                                       blendAccuracy: i.blendAccuracy, blendWeight: i.blendWeight, lambda: i.lambda,
                                       seconds: i.seconds, training: s.training)
    }

    func loadCategoryModelIfNeeded() {
        guard !categoryModel.withLock({ $0.loaded }) else { return }
        var stored: CategoryPredictor?
        do { stored = try loadStoredCategoryModel() } catch {
            // A model that cannot be read is retrained, not fatal: the items are all in LMDB.
            engine.logger.warning("stored category model unreadable; it will be retrained",
                                  metadata: ["collection": "\(name)", "error": "\(error)"])
        }
        categoryModel.withLock { s in
            guard !s.loaded else { return }
            s.loaded = true
            if let stored { s.predictor = stored; s.attemptedAt = stored.info.highWater }
        }
    }

    private func loadStoredCategoryModel() throws -> CategoryPredictor? {
        let bytes = try wrapped { try engine.environment.read { try engine.meta.get(MetaLayout.categoryModel(number), $0) } }
        guard let bytes else { return nil }
        let info = try JSONDecoder().decode(StoredCategoryModel.self, from: Data(bytes))
        guard info.version == StoredCategoryModel.version, info.dimension == definition.dimension else { return nil }
        return CategoryPredictor(model: try CategoryModel(classes: info.classes, dimension: info.dimension, weightBytes: info.weights),
                                 info: info)
    }

    /// Stores the model unless the collection was dropped meanwhile (then false).
    func storeCategoryModel(_ info: StoredCategoryModel) throws -> Bool {
        let bytes = Array(try JSONEncoder().encode(info))
        return try wrapped {
            try engine.environment.write { txn in
                guard try engine.isCurrent(self, txn) else { return false }
                try engine.meta.put(MetaLayout.categoryModel(number), bytes, txn)
                return true
            }
        }
    }
}
