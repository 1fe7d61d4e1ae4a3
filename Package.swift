// swift-tools-version:6.0
//
// Lookalike: a server for look-alike search over image embeddings.
// Layers, bottom to top (arrows point down only; see Docs/architecture.md):
//   C modules (CFaiss, CLMDB, CBLAS) -> storage (LookalikeStorage) and index (LookalikeIndex)
//   -> engine (LookalikeEngine) -> protocol/server and Tools/.
import PackageDescription

// Debian keeps omp.h (needed by FAISS headers) in GCC's private include folder, which clang
// does not search. -idirafter puts it last so it never shadows clang's own headers.
let gccInclude = "/usr/lib/gcc/x86_64-linux-gnu/12/include"

let package = Package(
    name: "Lookalike",
    products: [
        .library(name: "LookalikeEngine", targets: ["LookalikeEngine"]),
        .executable(name: "lookalike-server", targets: ["lookalike-server"]),
        .executable(name: "lookalike-demo", targets: ["lookalike-demo"]),
        .executable(name: "lookalike-bench", targets: ["lookalike-bench"]),
        .executable(name: "lookalike-ingest", targets: ["lookalike-ingest"]),
        .executable(name: "lookalike-compact", targets: ["lookalike-compact"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.24.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C modules: the only place C and C++ are spoken.
        // OpenBLAS provides both BLAS and LAPACK for FAISS; linking it alone (not the libblas and
        // liblapack alternatives) keeps one copy of it, so one thread setting governs every call.
        .target(
            name: "CFaiss",
            path: "Sources/CFaiss",
            cxxSettings: [
                .unsafeFlags(["-idirafter", gccInclude, "-O2", "-std=c++17"]),
            ],
            linkerSettings: [
                .linkedLibrary("faiss"), .linkedLibrary("gomp"), .linkedLibrary("openblas"),
                .linkedLibrary("m"), .linkedLibrary("stdc++"),
            ]
        ),
        .systemLibrary(name: "CLMDB", path: "Sources/CLMDB"),
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        // glibc's malloc.h (heap statistics for INFO), which Swift's Glibc module leaves out.
        .systemLibrary(name: "CLibc", path: "Sources/CLibc"),

        // Storage and index: LMDB tables; FAISS segments and exact scans.
        .target(name: "LookalikeStorage", dependencies: ["CLMDB"]),
        // -Ounchecked: the exact scans and TopK heaps index raw rows in loops run per candidate,
        // where overflow and bounds traps cost; the module's memory-guarding checks use
        // `require` (Require.swift), which -Ounchecked keeps.
        .target(name: "LookalikeIndex", dependencies: ["CFaiss", "CBLAS"],
                swiftSettings: [.unsafeFlags(["-Ounchecked"])]),

        // Engine: collections, write path, search, recovery.
        .target(
            name: "LookalikeEngine",
            dependencies: [
                "LookalikeStorage", "LookalikeIndex", "CBLAS", "LookalikeFormats",
                .product(name: "Logging", package: "swift-log"),
                // The metrics API only (as Logging is the logging API): events such as commit
                // batch sizes; the Prometheus backend is chosen by the server (Docs/operations.md).
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),

        // Protocol: RESP2/RESP3 and inline framing, the command table, replies; the metrics
        // endpoint (HTTP /metrics and /healthz).
        .target(
            name: "LookalikeProtocol",
            dependencies: [
                "LookalikeEngine", "CLibc",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // The server: flags, the TCP bootstrap, signals and graceful shutdown.
        .executableTarget(
            name: "lookalike-server",
            dependencies: [
                "LookalikeProtocol", "LookalikeEngine",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // main.swift holds the @main type and is not the only file: not top-level code.
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),

        // Input formats for the tools: vector files (npy, fvecs, raw, Amazon) and metadata
        // (JSON lines, Amazon's Python literals). Foundation only.
        .target(name: "LookalikeFormats"),
        // A small blocking Redis-protocol client, for the tools' online modes.
        .target(name: "LookalikeClient"),
        // What the tools share besides the client: their progress display. Foundation only; the
        // engine never imports it (tools may import the engine, not the reverse).
        .target(name: "LookalikeToolSupport"),

        // Tools.
        .executableTarget(
            name: "lookalike-ingest",
            dependencies: [
                "LookalikeEngine", "LookalikeStorage", "LookalikeFormats", "LookalikeClient", "LookalikeToolSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Tools/lookalike-ingest"
        ),
        .executableTarget(
            name: "lookalike-compact",
            dependencies: [
                "LookalikeEngine", "LookalikeClient", "LookalikeToolSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Tools/lookalike-compact"
        ),
        .executableTarget(
            name: "lookalike-bench",
            dependencies: [
                "LookalikeEngine", "LookalikeIndex", "LookalikeFormats", "LookalikeClient", "CBLAS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Tools/lookalike-bench"
        ),
        .executableTarget(
            name: "lookalike-demo",
            dependencies: [
                "LookalikeEngine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Tools/lookalike-demo"
        ),
        // A child process for the crash tests: streams acknowledged writes until killed.
        .executableTarget(
            name: "lookalike-test-writer",
            dependencies: ["LookalikeEngine"],
            path: "Tests/TestWriter"
        ),

        // Fuzz targets (Docs/fuzzing.md): libFuzzer drives them when Tools/fuzz.sh builds them
        // with -sanitize=fuzzer; a plain build makes executables that replay the files named.
        .systemLibrary(name: "CLibFuzzer", path: "Tests/Fuzz/CLibFuzzer"),
        .target(name: "FuzzSupport", dependencies: ["CLibFuzzer"], path: "Tests/Fuzz/Support"),
        .executableTarget(name: "fuzz-resp", dependencies: ["FuzzSupport", "LookalikeProtocol",
                          .product(name: "NIOCore", package: "swift-nio")], path: "Tests/Fuzz/resp"),
        .executableTarget(name: "fuzz-filter", dependencies: ["FuzzSupport", "LookalikeEngine"], path: "Tests/Fuzz/filter"),
        .executableTarget(name: "fuzz-commands", dependencies: ["FuzzSupport", "LookalikeProtocol", "LookalikeEngine",
                          .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                          .product(name: "Logging", package: "swift-log")], path: "Tests/Fuzz/commands"),
        .executableTarget(name: "fuzz-formats", dependencies: ["FuzzSupport", "LookalikeFormats"], path: "Tests/Fuzz/formats"),

        // Tests, one target per module (Docs/architecture.md); LookalikeTestSupport is what
        // they share (data, brute force, folders).
        .target(name: "LookalikeTestSupport", dependencies: ["LookalikeEngine", "LookalikeFormats"],
                path: "Tests/LookalikeTestSupport"),
        .testTarget(name: "LookalikeStorageTests", dependencies: ["LookalikeStorage", "LookalikeTestSupport"]),
        .testTarget(name: "LookalikeIndexTests", dependencies: ["LookalikeIndex", "LookalikeFormats", "LookalikeTestSupport"]),
        .testTarget(name: "LookalikeFormatsTests", dependencies: ["LookalikeFormats", "LookalikeTestSupport"]),
        .testTarget(
            name: "LookalikeEngineTests",
            dependencies: ["LookalikeEngine", "LookalikeStorage", "LookalikeIndex", "LookalikeFormats", "LookalikeTestSupport"]
        ),
        .testTarget(
            name: "LookalikeProtocolTests",
            dependencies: ["LookalikeProtocol", "LookalikeEngine", "LookalikeFormats", "LookalikeTestSupport",
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOEmbedded", package: "swift-nio"),
                           // The handler tests over a real Unix socket (CommandHandlerSocketTests).
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "Logging", package: "swift-log")]
        ),
    ]
)
