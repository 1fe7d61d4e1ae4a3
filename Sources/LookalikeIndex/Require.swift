// Require: the checks of this module that stay in every build. LookalikeIndex is compiled with
// -Ounchecked (Package.swift: its hot loops index raw rows and TopK heaps, and the overflow
// and bounds traps cost there), and -Ounchecked removes `precondition`. The conditions below
// guard memory that FAISS and the exact scans read and write, so they use `fatalError`, which
// -Ounchecked keeps: a broken invariant stops the process instead of corrupting memory.
// Threads: any.

/// Stops the process with `message` unless `condition` holds, in every build.
@inline(__always)
func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError(message()) }
}
