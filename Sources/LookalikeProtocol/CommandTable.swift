// CommandTable: every command the server knows, with its arity, how it orders against the
// connection's other commands, and what COMMAND reports about it.
//
// Ordering (per connection; replies always come back in request order):
//   .connection  runs at once on the event loop (PING, HELLO, AUTH, CLIENT ...);
//   .read        waits for the connection's earlier writes, then runs on the search pool;
//   .write       waits for the connection's earlier reads, then joins the group commit, so a
//                pipeline of writes commits together instead of one fsync each; commands
//                that write outside the group commit (VNEWNEIGHBORS's kept lists,
//                VCOMPACT) are writes too, so a read pipelined after them sees their result;
//   .exclusive   waits for everything earlier; everything later waits for it (DEL, FLUSHALL...).
// Threads: the table is immutable; `run` is called on the connection's event loop.

enum Ordering { case connection, read, write, exclusive }

struct CommandSpec: Sendable {
    let name: String
    /// Redis convention: n > 0 exactly n arguments (with the name); n < 0 at least -n.
    let arity: Int
    let ordering: Ordering
    let flags: [String]
    let firstKey: Int
    let lastKey: Int
    let run: @Sendable (Invocation) throws -> Reply

    func acceptsArity(_ n: Int) -> Bool { arity >= 0 ? n == arity : n >= -arity }
}

enum CommandTable {
    static let commands: [String: CommandSpec] = {
        var all: [String: CommandSpec] = [:]
        for spec in VectorCommands.specs + RecommendationCommands.specs + ServerCommands.specs + AdminCommands.specs
                    + ReplicationCommands.specs + PubSub.specs { all[spec.name] = spec }
        return all
    }()

    /// Commands allowed before AUTH when a password is set.
    static let allowedWithoutAuth: Set<String> = ["auth", "hello", "quit"]

    static func unknown(_ inv: Invocation) -> RESPValue {
        let args = (1..<min(inv.count, 4)).map { "'\(inv.string($0).prefix(64))'" }.joined(separator: " ")
        return .error("ERR unknown command '\(inv.string(0).prefix(128))', with args beginning with: \(args)")
    }
}
