// lookalike-bench: Lookalike's benchmarks, each a subcommand that prints markdown tables for
// Docs/benchmarks.md. Build with `swift build -c release`; the machine, data and settings are
// printed with every table so a run can be repeated.
import ArgumentParser

@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lookalike-bench",
        abstract: "Benchmarks Lookalike side by side with FAISS; prints markdown tables.",
        subcommands: [ANN.self, BuildBench.self, Filtered.self, IngestBench.self, Latency.self, Predict.self, Recommend.self, Scale.self])
}
