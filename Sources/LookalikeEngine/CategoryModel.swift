// CategoryModel: a softmax (multinomial logistic) regression from a collection's vectors (as the
// index stores them: unit length for cosine) to the values of its category attribute. It is the
// learned half of VPREDICT and CATEGORY AUTO; CategorySearch.swift blends it with the neighbour
// vote, CategoryTraining.swift decides when it is fitted and keeps it.
//
// Owns: the fit, the model's probabilities, the loss and gradient both are built on.
// The fit: L2-regularised cross-entropy, mini-batch Adam over sgemm tiles, on features
// standardised per dimension (unit-length embeddings have components near 1/sqrt(d): unscaled,
// the problem is badly conditioned and plain gradient steps crawl). The standardisation is
// folded back into the weights afterwards, so a prediction is one sgemv of d × classes.
// Invariants: `weights` has dimension × classes entries, row-major (one row per dimension, one
// column per class); `bias` one per class; `classes` sorted and distinct. Immutable once fitted.
// Threads: a model is an immutable value: any thread. `fit` runs on its caller's thread (the
// trainer's) and polls `cancelled` between mini-batches, so an engine closing never waits long.
import CBLAS
import Foundation
import LookalikeFormats

public struct CategoryModel: Sendable, Equatable {
    public let classes: [String]
    public let dimension: Int
    let weights: [Float]
    let bias: [Float]

    init(classes: [String], dimension: Int, weights: [Float], bias: [Float]) {
        precondition(weights.count == dimension * classes.count && bias.count == classes.count)
        self.classes = classes
        self.dimension = dimension
        self.weights = weights
        self.bias = bias
    }

    /// The fit's settings. `lambda` is chosen per collection on held-out items; the rest are
    /// fixed: measured on debian-pkgs, more epochs or a larger step did not raise accuracy.
    struct Fit {
        var lambda: Float
        var epochs = 12
        var batch = 256
        var learningRate: Float = 0.003
        var seed: UInt64 = 1
    }

    struct Cancelled: Error {}

    /// Mini-batch steps a fit takes at least.
    static let minimumSteps = 2_000

    // MARK: - Probabilities

    /// softmax(Wᵀx + b) for one vector of `dimension` floats.
    func probabilities(_ x: UnsafePointer<Float>) -> [Float] {
        var z = bias
        weights.withUnsafeBufferPointer { w in
            cblas_sgemv(CblasRowMajor, CblasTrans, Int32(dimension), Int32(classes.count), 1, w.baseAddress!,
                        Int32(classes.count), x, 1, 1, &z, 1)
        }
        z.withUnsafeMutableBufferPointer { Self.softmax($0.baseAddress!, count: $0.count) }
        return z
    }

    /// Probabilities for `rows` vectors, row-major: rows × classes.
    func probabilities(rows: UnsafePointer<Float>, count n: Int) -> [Float] {
        var z = [Float](repeating: 0, count: n * classes.count)
        Self.logits(rows, n, dimension, weights, bias, into: &z)
        z.withUnsafeMutableBufferPointer { p in
            for i in 0..<n { Self.softmax(p.baseAddress! + i * classes.count, count: classes.count) }
        }
        return z
    }

    /// Rows of probabilities raised to 1/temperature and renormalised (1: unchanged).
    static func tempered(_ p: [Float], classes c: Int, temperature: Double) -> [Float] {
        guard temperature != 1 else { return p }
        var out = p.map { Float(pow(Double($0), 1 / temperature)) }
        for start in stride(from: 0, to: out.count, by: c) {
            let sum = out[start..<(start + c)].reduce(0, +)
            if sum > 0 { for j in start..<(start + c) { out[j] /= sum } }
        }
        return out
    }

    /// Z = X·W + b for n rows of d features and C = bias.count classes.
    private static func logits(_ x: UnsafePointer<Float>, _ n: Int, _ d: Int, _ w: [Float], _ b: [Float],
                               into z: inout [Float]) {
        let c = b.count
        for i in 0..<n { for j in 0..<c { z[i * c + j] = b[j] } }
        w.withUnsafeBufferPointer { wp in
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(c), Int32(d), 1, x, Int32(d),
                        wp.baseAddress!, Int32(c), 1, &z, Int32(c))
        }
    }

    /// In place; the largest logit is subtracted first so exp never overflows.
    static func softmax(_ z: UnsafeMutablePointer<Float>, count: Int) {
        var top = -Float.infinity
        for j in 0..<count { top = max(top, z[j]) }
        var sum: Float = 0
        for j in 0..<count { z[j] = exp(z[j] - top); sum += z[j] }
        for j in 0..<count { z[j] /= sum }
    }

    // MARK: - Loss and gradient

    /// Mean cross-entropy of n rows plus (λ/2)·|W|² (the bias is not penalised), and its
    /// gradient: dW = Xᵀ(P − Y)/n + λW, db = Σ(P − Y)/n.
    static func lossAndGradient(_ x: UnsafePointer<Float>, rows n: Int, dimension d: Int, labels: ArraySlice<Int32>,
                                weights w: [Float], bias b: [Float], lambda: Float) -> (loss: Double, dW: [Float], db: [Float]) {
        let c = b.count
        var p = [Float](repeating: 0, count: n * c)
        logits(x, n, d, w, b, into: &p)
        var loss = 0.0
        var db = [Float](repeating: 0, count: c)
        p.withUnsafeMutableBufferPointer { pp in
            for (i, label) in zip(0..<n, labels) {
                let row = pp.baseAddress! + i * c
                softmax(row, count: c)
                loss -= log(Double(max(row[Int(label)], 1e-30)))
                row[Int(label)] -= 1
                for j in 0..<c { row[j] /= Float(n); db[j] += row[j] }
            }
        }
        var dW = w
        var penalty = 0.0
        for v in w { penalty += Double(v) * Double(v) }
        // dW = Xᵀ·(P − Y)/n + λ·W: sgemm with beta = λ over a copy of W.
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(d), Int32(c), Int32(n), 1, x, Int32(d),
                    p, Int32(c), lambda, &dW, Int32(c))
        return (loss / Double(n) + Double(lambda) / 2 * penalty, dW, db)
    }

    // MARK: - The fit

    /// Fits on `n` rows of `x` (row-major, d floats each) with labels in 0..<classes.count.
    static func fit(_ x: UnsafePointer<Float>, rows n: Int, dimension d: Int, labels: [Int32], classes: [String],
                    _ settings: Fit, cancelled: () -> Bool = { false }) throws -> CategoryModel {
        precondition(n > 0 && labels.count == n)
        let c = classes.count
        let (mean, inverseSD) = standardisation(x, n, d)
        var w = [Float](repeating: 0, count: d * c), b = [Float](repeating: 0, count: c)
        var adamW = Adam(count: w.count), adamB = Adam(count: c)
        var order = Array(0..<n)
        var rng = SeededRandom(seed: settings.seed)
        let batch = min(settings.batch, n)
        var xb = [Float](repeating: 0, count: batch * d)
        var yb = [Int32](repeating: 0, count: batch)
        var step = 0
        // Small collections get more epochs: Adam needs a few thousand steps whatever n is.
        let batches = (n + batch - 1) / batch
        let epochs = max(settings.epochs, (Self.minimumSteps + batches - 1) / batches)
        let steps = epochs * batches
        for _ in 0..<epochs {
            for i in stride(from: n - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            for start in stride(from: 0, to: n, by: batch) {
                if cancelled() { throw Cancelled() }
                let m = min(batch, n - start)
                for r in 0..<m {
                    let src = x + order[start + r] * d
                    for j in 0..<d { xb[r * d + j] = (src[j] - mean[j]) * inverseSD[j] }
                    yb[r] = labels[order[start + r]]
                }
                let g = lossAndGradient(xb, rows: m, dimension: d, labels: yb[0..<m], weights: w, bias: b, lambda: settings.lambda)
                // Linear decay to a tenth: the last epochs settle instead of jittering.
                let rate = settings.learningRate * (1 - 0.9 * Float(step) / Float(steps))
                step += 1
                adamW.update(&w, g.dW, rate: rate)
                adamB.update(&b, g.db, rate: rate)
            }
        }
        // Fold the standardisation in: Wᵀ((x − μ)/σ) + b = (W/σ)ᵀx + (b − Σ_j μ_j/σ_j W_j).
        for j in 0..<d {
            for k in 0..<c {
                w[j * c + k] *= inverseSD[j]
                b[k] -= mean[j] * w[j * c + k]
            }
        }
        return CategoryModel(classes: classes, dimension: d, weights: w, bias: b)
    }

    /// Per-dimension mean and 1/standard deviation (a constant dimension gets 1).
    private static func standardisation(_ x: UnsafePointer<Float>, _ n: Int, _ d: Int) -> ([Float], [Float]) {
        var sum = [Double](repeating: 0, count: d), squares = [Double](repeating: 0, count: d)
        for i in 0..<n {
            for j in 0..<d {
                let v = Double(x[i * d + j])
                sum[j] += v
                squares[j] += v * v
            }
        }
        let mean = sum.map { $0 / Double(n) }
        let inverse = (0..<d).map { j -> Float in
            let variance = squares[j] / Double(n) - mean[j] * mean[j]
            return variance > 1e-12 ? Float(1 / variance.squareRoot()) : 1
        }
        return (mean.map { Float($0) }, inverse)
    }

    /// Adam's moment estimates for one parameter array.
    private struct Adam {
        var m: [Float], v: [Float], t: Float = 0
        init(count: Int) { m = Array(repeating: 0, count: count); v = Array(repeating: 0, count: count) }

        mutating func update(_ x: inout [Float], _ g: [Float], rate: Float) {
            t += 1
            let c1 = 1 - pow(Float(0.9), t), c2 = 1 - pow(Float(0.999), t)
            for i in 0..<x.count {
                m[i] = 0.9 * m[i] + 0.1 * g[i]
                v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i]
                x[i] -= rate * (m[i] / c1) / ((v[i] / c2).squareRoot() + 1e-8)
            }
        }
    }

    // MARK: - Stored form

    /// Weights and bias as little-endian float32 bytes (the stored model's JSON holds them as
    /// base64: a 384 × 58 model is 89 KB, not the ~300 KB of numbers as text).
    var weightBytes: Data { Self.bytes(weights + bias) }

    init(classes: [String], dimension: Int, weightBytes: Data) throws {
        let floats = Self.floats(weightBytes)
        guard floats.count == (dimension + 1) * classes.count else {
            throw EngineError.storage("stored category model has \(floats.count) numbers, expected \((dimension + 1) * classes.count)")
        }
        self.init(classes: classes, dimension: dimension, weights: Array(floats[0..<(dimension * classes.count)]),
                  bias: Array(floats[(dimension * classes.count)...]))
    }

    static func bytes(_ floats: [Float]) -> Data {
        var out = Data(capacity: floats.count * 4)
        for f in floats { withUnsafeBytes(of: f.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        return out
    }

    static func floats(_ data: Data) -> [Float] {
        data.withUnsafeBytes { raw in
            (0..<(raw.count / 4)).map {
                Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)))
            }
        }
    }
}
