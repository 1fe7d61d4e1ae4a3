// The category model (issue 19): its loss and gradient on a case checked by hand and by finite
// differences; its fit against a plain reference fit on separable generated classes; a stored
// model surviving a restart without a retrain; the vote kept (and why) for too few labelled items
// or one category; top-p search never returning fewer than k when k exist.
import Foundation
import LookalikeFormats
import LookalikeTestSupport
import XCTest

@testable import LookalikeEngine

final class CategoryModelTests: XCTestCase {
    func testLossAndGradientOnAHandCheckedCase() {
        // One row x = 1, label 0, two classes, W = [1, -1], b = 0, λ = 0.1: logits (1, -1),
        // p0 = e/(e + 1/e) = 0.880797; loss = -ln p0 + λ/2 (1 + 1) = 0.126928 + 0.1.
        let g = CategoryModel.lossAndGradient([1], rows: 1, dimension: 1, labels: [0], weights: [1, -1], bias: [0, 0], lambda: 0.1)
        XCTAssertEqual(g.loss, 0.226928, accuracy: 1e-5)
        // dW = x (p − y) + λW = (−0.119203 + 0.1, 0.119203 − 0.1); db = p − y.
        XCTAssertEqual(g.dW[0], -0.019203, accuracy: 1e-5)
        XCTAssertEqual(g.dW[1], 0.019203, accuracy: 1e-5)
        XCTAssertEqual(g.db[0], -0.119203, accuracy: 1e-5)
        XCTAssertEqual(g.db[1], 0.119203, accuracy: 1e-5)
    }

    func testGradientMatchesFiniteDifferences() {
        var rng = SeededRandom(seed: 5)
        let (n, d, c) = (6, 3, 4)
        let x = (0..<(n * d)).map { _ in rng.gaussian() }
        let labels: [Int32] = [0, 1, 2, 3, 1, 2]
        let w = (0..<(d * c)).map { _ in 0.3 * rng.gaussian() }
        let b = (0..<c).map { _ in 0.3 * rng.gaussian() }
        let g = CategoryModel.lossAndGradient(x, rows: n, dimension: d, labels: labels[...], weights: w, bias: b, lambda: 0.05)
        for i in 0..<w.count {
            var up = w, down = w
            up[i] += 1e-2
            down[i] -= 1e-2
            let numeric = (CategoryModel.lossAndGradient(x, rows: n, dimension: d, labels: labels[...], weights: up, bias: b, lambda: 0.05).loss
                - CategoryModel.lossAndGradient(x, rows: n, dimension: d, labels: labels[...], weights: down, bias: b, lambda: 0.05).loss) / 2e-2
            XCTAssertEqual(Double(g.dW[i]), numeric, accuracy: 2e-3, "dW[\(i)]")
        }
    }

    /// Three Gaussian classes in 8 dimensions, centres 4 apart.
    private func gaussianClasses(_ perClass: Int, seed: UInt64) -> (x: [Float], labels: [Int32]) {
        var rng = SeededRandom(seed: seed)
        var x: [Float] = [], labels: [Int32] = []
        for i in 0..<(3 * perClass) {
            let label = i % 3
            x += (0..<8).map { j in (j == label ? 4 : 0) + rng.gaussian() }
            labels.append(Int32(label))
        }
        return (x, labels)
    }

    func testFitAgreesWithAReferenceFitOnSeparableClasses() throws {
        let train = gaussianClasses(100, seed: 1), test = gaussianClasses(100, seed: 2)
        let model = try CategoryModel.fit(train.x, rows: 300, dimension: 8, labels: train.labels, classes: ["a", "b", "c"], .init(lambda: 1e-3))
        // The reference: full-batch gradient descent in Double, written out plainly.
        var w = [Double](repeating: 0, count: 8 * 3), b = [Double](repeating: 0, count: 3)
        func logits(_ x: ArraySlice<Float>) -> [Double] {
            let row = Array(x)
            var z = b
            for k in 0..<3 { for j in 0..<8 { z[k] += Double(row[j]) * w[j * 3 + k] } }
            return z
        }
        for _ in 0..<300 {
            var gw = [Double](repeating: 0, count: 24), gb = [Double](repeating: 0, count: 3)
            for i in 0..<300 {
                let z = logits(train.x[(i * 8)..<(i * 8 + 8)])
                let e = z.map { exp($0 - z.max()!) }
                for k in 0..<3 {
                    let r = e[k] / e.reduce(0, +) - (Int32(k) == train.labels[i] ? 1 : 0)
                    gb[k] += r / 300
                    for j in 0..<8 { gw[j * 3 + k] += r * Double(train.x[i * 8 + j]) / 300 }
                }
            }
            for i in 0..<24 { w[i] -= 0.5 * (gw[i] + 1e-3 * w[i]) }
            for k in 0..<3 { b[k] -= 0.5 * gb[k] }
        }
        var right = 0, agree = 0
        for i in 0..<300 {
            let p = test.x[(i * 8)...].withUnsafeBufferPointer { model.probabilities($0.baseAddress!) }
            let ours = p.indices.max { p[$0] < p[$1] }!
            let z = logits(test.x[(i * 8)..<(i * 8 + 8)])
            if ours == Int(test.labels[i]) { right += 1 }
            if ours == z.indices.max(by: { z[$0] < z[$1] })! { agree += 1 }
            XCTAssertEqual(p.reduce(0, +), 1, accuracy: 1e-4)
        }
        XCTAssertGreaterThanOrEqual(Double(right) / 300, 0.97)
        XCTAssertGreaterThanOrEqual(Double(agree) / 300, 0.97)
    }

    // MARK: - In a collection

    private func labelled(_ engine: Engine, perClass: Int, classes: [String], spread: Float = 1) async throws -> LookalikeEngine.Collection {
        let c = try engine.createCollection(.init(name: "p", dimension: 8, metric: .l2, index: "Flat", attributes: ["category"]))
        var rng = SeededRandom(seed: 9)
        var batch: [WriteRequest] = []
        for i in 0..<(perClass * classes.count) {
            let label = i % classes.count
            let v = (0..<8).map { j in (j == label ? 3 : 0) + spread * rng.gaussian() }
            batch.append(.upsert(key: "i\(i)", vector: v, attributes: .set("{\"category\":\"\(classes[label])\"}")))
        }
        for r in await c.write(batch: batch) { _ = try r.get() }
        return c
    }

    func testStoredModelSurvivesARestartWithoutRetraining() async throws {
        let dir = temporaryDirectory(self)
        var engine = try Engine(directory: dir)
        var c = try await labelled(engine, perClass: 100, classes: ["a", "b", "c"], spread: 1.5)
        let status = try c.trainCategoryModel()
        XCTAssertEqual(status.classes, 3)
        XCTAssertEqual(status.labelledItems, 300)
        XCTAssertGreaterThan(try XCTUnwrap(status.modelAccuracy), 0.8)
        let query: [Float] = [1.4, 1.5, 0, 0, 0, 0, 0, 0]
        let before = try c.predictCategories(.vector(query), using: .model)
        engine.close()

        engine = try Engine(directory: dir)
        defer { engine.close() }
        c = try XCTUnwrap(engine.collection("p"))
        XCTAssertEqual(try c.predictCategories(.vector(query), using: .model), before)
        // The prediction found the stored model current: no fit was asked for.
        var after = c.categoryPredictorStatus()
        XCTAssertFalse(after.training)
        after.training = status.training
        XCTAssertEqual(after, status)
    }

    func testTooFewLabelsOrOneCategoryKeepTheVoteAndSaySo() async throws {
        let engine = try Engine(directory: temporaryDirectory(self))
        defer { engine.close() }
        let c = try await labelled(engine, perClass: 50, classes: ["a", "b"])
        var status = try c.trainCategoryModel()
        XCTAssertEqual(status.predictor, "vote")
        XCTAssertTrue(status.note.contains("100 items have a category; a model needs 200"), status.note)
        XCTAssertNil(status.blendAccuracy)
        XCTAssertEqual(try c.predict(.vector([3, 0, 0, 0, 0, 0, 0, 0]))?.category, "a")

        let one = try engine.createCollection(.init(name: "one", dimension: 2, metric: .l2, index: "Flat"))
        for r in await one.write(batch: (0..<250).map {
            .upsert(key: "k\($0)", vector: [Float($0), 1], attributes: .set(#"{"category":"only"}"#))
        }) { _ = try r.get() }
        status = try one.trainCategoryModel()
        XCTAssertEqual(status.predictor, "vote")
        XCTAssertTrue(status.note.contains("the same one ('only')"), status.note)
    }

    func testTopPNeverReturnsFewerThanKWhenKExist() async throws {
        let engine = try Engine(directory: temporaryDirectory(self))
        defer { engine.close() }
        let c = try engine.createCollection(.init(name: "t", dimension: 2, metric: .l2, index: "Flat", attributes: ["category"]))
        let sizes = ["small": 3, "mid": 4, "big": 50]
        var writes: [WriteRequest] = []
        for (name, size) in sizes {
            for i in 0..<size {
                writes.append(.upsert(key: "\(name)\(i)", vector: [Float(i), Float(name.count)], attributes: .set("{\"category\":\"\(name)\"}")))
            }
        }
        for r in await c.write(batch: writes) { _ = try r.get() }
        let ranked = [("small", 0.6), ("mid", 0.3), ("big", 0.1)].map { CategoryProbability(category: $0.0, probability: $0.1) }
        for (p, k, expected) in [(0.9, 10, 7), (0.95, 10, 10), (0.95, 57, 57), (0.95, 100, 57), (0.5, 10, 3), (0.95, 2, 2)] {
            let hits = try c.searchCategories(SearchRequest(query: .vector([0, 4]), k: k), ranked, topP: p, attribute: "category")
            XCTAssertEqual(hits.count, expected, "P \(p), k \(k)")
            XCTAssertEqual(Set(hits.map(\.key)).count, hits.count)
            XCTAssertEqual(hits.map(\.score), hits.map(\.score).sorted(), "best first")
        }
        XCTAssertEqual(Collection.shares(10, [0.6, 0.3, 0.1]), [6, 3, 1])
        XCTAssertEqual(Collection.shares(3, [0.7, 0.1, 0.1, 0.1]).reduce(0, +), 3)
    }
}
