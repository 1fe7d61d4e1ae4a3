// PubSub: PUBLISH, SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE and PUBSUB, as Redis has
// them (Sentinel's __sentinel__:hello channel runs on this). Messages are not stored: a
// subscriber gets what is published while it is subscribed.
// Replies: one per channel for (P)(UN)SUBSCRIBE; messages as arrays in RESP2 and push frames in
// RESP3, in the protocol the subscriber spoke when it subscribed. A subscriber's connection is
// of type `pubsub` for CLIENT LIST and CLIENT KILL TYPE.
// Not done: RESP2's restriction of a subscribed connection to (P)(UN)SUBSCRIBE, PING and QUIT
// (other commands run as usual); sharded channels (SSUBSCRIBE).
// Threads: the registry takes a short lock; messages are written with channel.writeAndFlush,
// which NIO makes safe from any thread. Subscriptions end when their connection closes.
import Foundation
import NIOCore
import Synchronization

final class PubSub: Sendable {
    struct Subscriber: Sendable {
        let channel: Channel
        var version: Int
        var channels: Set<[UInt8]> = []
        var patterns: Set<[UInt8]> = []
    }

    private let subscribers = Mutex<[Int: Subscriber]>([:])

    static let specs: [CommandSpec] = [
        CommandSpec(name: "publish", arity: 3, ordering: .connection, flags: ["pubsub", "fast"], firstKey: 0, lastKey: 0, run: publish),
        CommandSpec(name: "subscribe", arity: -2, ordering: .connection, flags: ["pubsub"], firstKey: 0, lastKey: 0, run: { try change($0, pattern: false, add: true) }),
        CommandSpec(name: "psubscribe", arity: -2, ordering: .connection, flags: ["pubsub"], firstKey: 0, lastKey: 0, run: { try change($0, pattern: true, add: true) }),
        CommandSpec(name: "unsubscribe", arity: -1, ordering: .connection, flags: ["pubsub"], firstKey: 0, lastKey: 0, run: { try change($0, pattern: false, add: false) }),
        CommandSpec(name: "punsubscribe", arity: -1, ordering: .connection, flags: ["pubsub"], firstKey: 0, lastKey: 0, run: { try change($0, pattern: true, add: false) }),
        CommandSpec(name: "pubsub", arity: -2, ordering: .connection, flags: ["pubsub"], firstKey: 0, lastKey: 0, run: pubsub),
    ]

    /// Sends `message` to every subscriber of `channel`; returns how many got it.
    func publish(_ channel: [UInt8], _ message: [UInt8]) -> Int {
        let all = subscribers.withLock { Array($0.values) }
        var count = 0
        for s in all {
            var frames: [RESPValue] = []
            if s.channels.contains(channel) { frames.append(.push([.bulk(Array("message".utf8)), .bulk(channel), .bulk(message)])) }
            for p in s.patterns where Glob(p).matches(channel) {
                frames.append(.push([.bulk(Array("pmessage".utf8)), .bulk(p), .bulk(channel), .bulk(message)]))
            }
            guard !frames.isEmpty else { continue }
            count += frames.count
            var buffer = s.channel.allocator.buffer(capacity: 64 + message.count)
            for f in frames { f.write(to: &buffer, version: s.version) }
            s.channel.writeAndFlush(buffer, promise: nil)
        }
        return count
    }

    static func publish(_ inv: Invocation) throws -> Reply {
        .now(.integer(inv.server.pubsub.publish(inv.bytes(1), inv.bytes(2))))
    }

    /// (P)SUBSCRIBE and (P)UNSUBSCRIBE: one reply per channel, each with the subscription count.
    static func change(_ inv: Invocation, pattern: Bool, add: Bool) throws -> Reply {
        let server = inv.server, id = inv.connection.id
        let kind = (add ? "" : "un") + (pattern ? "psubscribe" : "subscribe")
        var names = (1..<inv.count).map { inv.bytes($0) }
        let firstSubscription = server.pubsub.subscribers.withLock { $0[id] == nil } && add
        var replies: [RESPValue] = []
        server.pubsub.subscribers.withLock { all in
            var s = all[id] ?? Subscriber(channel: inv.channel, version: inv.connection.protocolVersion)
            s.version = inv.connection.protocolVersion
            if !add && names.isEmpty { names = Array(pattern ? s.patterns : s.channels).sorted { $0.lexicographicallyPrecedes($1) } }
            for n in names {
                if pattern {
                    if add { s.patterns.insert(n) } else { s.patterns.remove(n) }
                } else {
                    if add { s.channels.insert(n) } else { s.channels.remove(n) }
                }
                replies.append(.push([.bulk(Array(kind.utf8)), .bulk(n), .integer(s.channels.count + s.patterns.count)]))
            }
            if replies.isEmpty { replies.append(.push([.bulk(Array(kind.utf8)), .null, .integer(s.channels.count + s.patterns.count)])) }
            if s.channels.isEmpty && s.patterns.isEmpty { all[id] = nil } else { all[id] = s }
        }
        let subscribed = server.pubsub.subscribers.withLock { $0[id] != nil }
        server.clients.update(id) { $0.kind = subscribed ? .pubsub : .normal }
        if firstSubscription {
            inv.channel.closeFuture.whenComplete { _ in _ = server.pubsub.subscribers.withLock { $0.removeValue(forKey: id) } }
        }
        return .now(replies.count == 1 ? replies[0] : .sequence(replies))
    }

    /// PUBSUB CHANNELS [pattern] | NUMSUB [channel …] | NUMPAT
    static func pubsub(_ inv: Invocation) throws -> Reply {
        let all = inv.server.pubsub.subscribers.withLock { Array($0.values) }
        switch inv.keyword(1) {
        case "CHANNELS":
            let glob = inv.count > 2 ? Glob(inv.bytes(2)) : nil
            let names = Set(all.flatMap(\.channels)).filter { glob?.matches($0) ?? true }
            return .now(.array(names.sorted { $0.lexicographicallyPrecedes($1) }.map { .bulk($0) }))
        case "NUMSUB":
            return .now(.array((2..<max(2, inv.count)).flatMap { i -> [RESPValue] in
                let n = inv.bytes(i)
                return [.bulk(n), .integer(all.filter { $0.channels.contains(n) }.count)]
            }))
        case "NUMPAT":
            return .now(.integer(all.reduce(0) { $0 + $1.patterns.count }))
        default:
            throw CommandError("unknown subcommand '\(inv.string(1).prefix(32))'. Try PUBSUB CHANNELS, NUMSUB, NUMPAT.")
        }
    }

    var counts: (channels: Int, patterns: Int, clients: Int) {
        subscribers.withLock { all in
            (Set(all.values.flatMap(\.channels)).count, all.values.reduce(0) { $0 + $1.patterns.count }, all.count)
        }
    }
}
