// ConfigArguments: how --config FILE becomes flags. The file's directives (ConfigFile.swift)
// are turned into `--flag value` pairs placed before the command line's own arguments, so a
// flag given on the command line overrides the file (the last value of an option wins).
// Each directive is first parsed alone, so an unknown name or a bad value stops the start
// with a message naming the file and line, before anything is opened.
// Threads: the main thread, before `run`.
import ArgumentParser
import Foundation
import LookalikeProtocol

extension LookalikeServer {
    static func main() {
        do {
            main(try withConfigFile(Array(CommandLine.arguments.dropFirst())))
        } catch {
            exit(withError: error)
        }
    }

    /// The command line with the --config file's directives put before it.
    static func withConfigFile(_ arguments: [String]) throws -> [String] {
        guard let path = configPath(arguments) else { return arguments }
        let directives: [ConfigDirective]
        do { directives = try ConfigFile.read(path) } catch let e as ConfigFileError {
            throw ValidationError(e.description)
        }
        var fromFile: [String] = []
        for d in directives {
            let pair = ["--\(d.flag)", d.value]
            do { _ = try parse(pair) } catch {
                throw ValidationError("\(path) line \(d.line): '\(d.name) \(d.value.prefix(64))': \(message(for: error))")
            }
            fromFile += pair
        }
        return fromFile + arguments
    }

    /// The value of --config (or --config=FILE), if given; the last one, as for every option.
    static func configPath(_ arguments: [String]) -> String? {
        var path: String?
        for (i, a) in arguments.enumerated() {
            if a == "--config", i + 1 < arguments.count { path = arguments[i + 1] }
            if a.hasPrefix("--config=") { path = String(a.dropFirst("--config=".count)) }
        }
        return path
    }
}
