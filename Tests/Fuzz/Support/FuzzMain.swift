// FuzzSupport: the main of every fuzz target (Docs/fuzzing.md).
//
// Built with `-sanitize=fuzzer -D LOOKALIKE_FUZZ` (Tools/fuzz.sh), `fuzzMain` hands the
// arguments to libFuzzer, which then calls the target's body with each input. In a plain
// `swift build` the same executable replays the files (or folders of files) named on its
// command line through the body, so the targets always compile and a crash input can be
// rerun under a debugger without the fuzzer.
import Foundation
#if LOOKALIKE_FUZZ
import CLibFuzzer
#endif

nonisolated(unsafe) private var body: ((UnsafeRawBufferPointer) -> Void)?

/// Runs `target` as a libFuzzer target (fuzz build) or over the named files (plain build).
/// Never returns.
public func fuzzMain(_ target: @escaping (UnsafeRawBufferPointer) -> Void) -> Never {
    body = target
    #if LOOKALIKE_FUZZ
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
        body!(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    })
    #else
    var files: [String] = []
    for path in CommandLine.arguments.dropFirst() where !path.hasPrefix("-") {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            FileHandle.standardError.write(Data("no such file: \(path)\n".utf8))
            exit(2)
        }
        if isDirectory.boolValue {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            files += names.sorted().map { "\(path)/\($0)" }
        } else {
            files.append(path)
        }
    }
    for file in files {
        let data = FileManager.default.contents(atPath: file) ?? Data()
        data.withUnsafeBytes { target($0) }
    }
    print("\(files.count) inputs ran (plain build: no fuzzing; Tools/fuzz.sh builds the fuzzer)")
    exit(0)
    #endif
}

/// A check that, unlike `precondition` in a release build, prints why it failed.
public func require(_ condition: Bool, _ message: @autoclosure () -> String,
                    file: StaticString = #fileID, line: UInt = #line) {
    if !condition { fatalError(message(), file: file, line: line) }
}

nonisolated(unsafe) private var scratch: String?

/// A fresh folder for this process, `lookalike-fuzz-<name>-<pid>` in /dev/shm (memory-backed:
/// targets rewrite files for every input) or else the temporary folder. Removed at exit;
/// folders left by processes that crashed are removed here.
public func scratchFolder(_ name: String) -> String {
    let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : FileManager.default.temporaryDirectory.path
    let prefix = "lookalike-fuzz-\(name)-"
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] where entry.hasPrefix(prefix) {
        if let pid = Int32(entry.dropFirst(prefix.count)), kill(pid, 0) != 0, errno == ESRCH {
            try? FileManager.default.removeItem(atPath: "\(base)/\(entry)")
        }
    }
    let folder = "\(base)/\(prefix)\(getpid())"
    try? FileManager.default.removeItem(atPath: folder)
    do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
        fatalError("cannot create \(folder): \(error)")
    }
    scratch = folder
    atexit { if let folder = scratch { try? FileManager.default.removeItem(atPath: folder) } }
    return folder
}

/// LOOKALIKE_FUZZ_KNOWN=1 turns off the targets' workarounds for known open bugs (each marked
/// where it is, with its input in Tests/Fuzz/crashes), so those inputs reproduce.
public let knownBugsOn = ProcessInfo.processInfo.environment["LOOKALIKE_FUZZ_KNOWN"] != nil
