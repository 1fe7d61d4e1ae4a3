// fuzz-formats: the ingest tool's readers on arbitrary file contents (Docs/fuzzing.md):
// MetadataFile (JSON lines, Amazon's Python literals) and VectorFile (npy, fvecs, raw, Amazon).
//
// Input: byte 0 picks the reader ('0' jsonl, '1' amazon metadata, '2' npy, '3' fvecs,
// '4' raw, '5' Amazon vectors; its value mod 6), byte 1 the dimension for raw and Amazon
// vectors (1...16: real Amazon rows of 4096 floats would not fit an input); the rest is the
// file. The file is written to a temporary folder and read through the public API as the
// tool reads it: every record, or every row's key and vector. A refusal (FormatError) is
// fine; a crash is not.
import Foundation
import FuzzSupport
import LookalikeFormats

let path = scratchFolder("formats") + "/input"

fuzzMain { input in
    guard input.count >= 2 else { return }
    let reader = Int(input[0]) % 6
    let dimension = Int(input[1]) % 16 + 1
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    require(fd >= 0, "cannot write \(path): \(String(cString: strerror(errno)))")
    let body = UnsafeRawBufferPointer(rebasing: input[2...])
    require(body.isEmpty || write(fd, body.baseAddress, body.count) == body.count, "short write to \(path)")
    close(fd)
    switch reader {
    case 0, 1:
        guard let file = try? MetadataFile(path: path, format: reader == 0 ? .jsonl : .amazon) else { return }
        var records = 0
        while let record = file.next() {
            // What the ingest tool does next (Items.swift): the attributes become JSON.
            if case .success(let attributes) = record, JSONSerialization.isValidJSONObject(attributes) {
                _ = try? JSONSerialization.data(withJSONObject: attributes, options: [.sortedKeys])
            }
            records += 1
            require(records <= input.count, "more records than bytes")
        }
    default:
        let format: VectorFormat = [.npy, .fvecs, .raw, .amazon][reader - 2]
        let dim: Int? = format == .raw || format == .amazon ? dimension : nil
        guard let file = try? VectorFile(path: path, format: format, dimension: dim) else { return }
        require(file.count >= 0 && file.dimension > 0, "count \(file.count), dimension \(file.dimension)")
        for row in 0..<file.count {
            _ = file.key(at: row)
            if let vector = try? file.vector(at: row) {
                require(vector.count == file.dimension, "row \(row) has \(vector.count) values, not \(file.dimension)")
            }
        }
    }
}
