// CommandDocs: what COMMAND DOCS answers: a summary, the group and the version each command
// appeared in (Redis's for Redis's commands; ours are "lookalike" commands since 0.1.0).
// Threads: an immutable table.
enum CommandDocs {
    /// name -> (summary, group, since)
    static let table: [String: (String, String, String)] = [
        "auth": ("Authenticates the connection.", "connection", "1.0.0"),
        "bgsave": ("Seals every mutable segment in the background.", "server", "1.0.0"),
        "client": ("A container for client connection commands.", "connection", "2.4.0"),
        "command": ("Returns detailed information about all commands.", "server", "2.8.13"),
        "config": ("Gets or sets configuration parameters.", "server", "2.0.0"),
        "dbsize": ("Returns the number of collections.", "server", "1.0.0"),
        "debug": ("DEBUG RELOAD: persists, closes and reopens the data folder.", "server", "1.0.0"),
        "del": ("Deletes collections.", "generic", "1.0.0"),
        "discard": ("Discards a transaction.", "transactions", "2.0.0"),
        "echo": ("Returns the given string.", "connection", "1.0.0"),
        "exec": ("Executes all commands in a transaction.", "transactions", "1.2.0"),
        "exists": ("Determines whether collections exist.", "generic", "1.0.0"),
        "flushall": ("Removes every collection.", "server", "1.0.0"),
        "flushdb": ("Removes every collection.", "server", "1.0.0"),
        "hello": ("Handshakes with the server (protocol version, AUTH, SETNAME).", "connection", "6.0.0"),
        "info": ("Returns information and statistics about the server.", "server", "1.0.0"),
        "keys": ("Returns the collection names that match a pattern.", "generic", "1.0.0"),
        "lastsave": ("Returns the Unix time of the last successful SAVE.", "server", "1.0.0"),
        "latency": ("A container for latency diagnostics (no events are kept).", "server", "2.8.13"),
        "memory": ("MEMORY USAGE: the bytes a collection holds in memory and in LMDB (VINFO memory-* for the parts).", "server", "4.0.0"),
        "monitor": ("Streams every command the server receives.", "server", "1.0.0"),
        "multi": ("Starts a transaction.", "transactions", "1.2.0"),
        "ping": ("Returns the server's liveliness response.", "connection", "1.0.0"),
        "quit": ("Closes the connection.", "connection", "1.0.0"),
        "role": ("Returns the replication role.", "server", "2.8.12"),
        "save": ("Seals every mutable segment, so a restart replays nothing.", "server", "1.0.0"),
        "scan": ("Iterates over collection names.", "generic", "2.8.0"),
        "select": ("Selects database 0 (the only one).", "connection", "1.0.0"),
        "shutdown": ("Finishes in-flight commands and stops the server.", "server", "1.0.0"),
        "slowlog": ("A container for slow log commands.", "server", "2.2.12"),
        "time": ("Returns the server time.", "server", "2.6.0"),
        "type": ("Returns the type of a key (vectorset or none).", "generic", "1.0.0"),
        "unlink": ("Deletes collections.", "generic", "4.0.0"),
        "unwatch": ("Forgets watched keys (none are ever watched).", "transactions", "2.2.0"),
        "watch": ("Not supported: transactions are not conditional.", "transactions", "2.2.0"),
        "vadd": ("Adds an element with its vector (and attributes) to a vector set.", "vector_set", "8.0.0"),
        "vcard": ("Returns the number of elements in a vector set.", "vector_set", "8.0.0"),
        "vcompact": ("Rebuilds a collection's segments without deleted items, or reports its progress (STATUS).", "lookalike", "0.1.0"),
        "vdim": ("Returns the dimension of a vector set.", "vector_set", "8.0.0"),
        "vemb": ("Returns the vector of an element.", "vector_set", "8.0.0"),
        "vgetattr": ("Returns the attributes of an element.", "vector_set", "8.0.0"),
        "vhistory": ("Top-k for a user's history of elements.", "lookalike", "0.1.0"),
        "vinfo": ("Returns information about a vector set.", "vector_set", "8.0.0"),
        "vismember": ("Determines whether an element is in a vector set.", "vector_set", "8.0.0"),
        "vlinks": ("Returns an element's neighbours in the HNSW graph.", "vector_set", "8.0.0"),
        "vneighbors": ("Returns the neighbours the new-items job kept for an element.", "lookalike", "0.1.0"),
        "vnewneighbors": ("Runs the new items' neighbours batch job, or reports its status.", "lookalike", "0.1.0"),
        "vpredict": ("Predicts the category of a vector or an element.", "lookalike", "0.1.0"),
        "vrandmember": ("Returns random elements of a vector set.", "vector_set", "8.0.0"),
        "vrecommend": ("The recommendation cascade for an element.", "lookalike", "0.1.0"),
        "vrem": ("Removes an element from a vector set.", "vector_set", "8.0.0"),
        "vsetattr": ("Sets the attributes of an element.", "vector_set", "8.0.0"),
        "vsim": ("Returns the elements most similar to a vector or an element.", "vector_set", "8.0.0"),
        "vwithin": ("Returns every element within a score threshold.", "lookalike", "0.1.0"),
    ]

    /// COMMAND DOCS' map for one command.
    static func entry(_ name: String) -> RESPValue? {
        guard let (summary, group, since) = table[name] else { return nil }
        return .map([(.string("summary"), .string(summary)), (.string("since"), .string(since)),
                     (.string("group"), .string(group))])
    }
}
