// VectorMath: checks and transforms applied to every vector before it reaches an index.
// Threads: pure functions.
import CBLAS

public enum VectorMath {
    /// True when every component is a finite number (no NaN, no infinity).
    public static func allFinite(_ v: UnsafeBufferPointer<Float>) -> Bool {
        for x in v where !x.isFinite { return false }
        return true
    }

    public static func squaredNorm(_ v: UnsafePointer<Float>, count: Int) -> Float {
        cblas_sdot(Int32(count), v, 1, v, 1)
    }

    /// Scales v to unit length in place; returns false (and leaves v) when its norm is zero
    /// or not finite, which cosine cannot rank.
    @discardableResult
    public static func normalize(_ v: UnsafeMutableBufferPointer<Float>) -> Bool {
        let norm = squaredNorm(v.baseAddress!, count: v.count).squareRoot()
        guard norm > 0, norm.isFinite else { return false }
        cblas_sscal(Int32(v.count), 1 / norm, v.baseAddress!, 1)
        return true
    }

    public static func normalized(_ v: [Float]) -> [Float]? {
        var copy = v
        let ok = copy.withUnsafeMutableBufferPointer { normalize($0) }
        return ok ? copy : nil
    }

    /// y = M x for a row-major `rows` x `columns` matrix M (a random projection: REDUCE).
    public static func multiply(_ matrix: UnsafePointer<Float>, rows: Int, columns: Int,
                                _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(rows), Int32(columns), 1,
                    matrix, Int32(columns), x, 1, 0, y, 1)
    }

    /// Limits the threads OpenBLAS starts inside one call (the server has its own pool).
    public static func setBLASThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
}
