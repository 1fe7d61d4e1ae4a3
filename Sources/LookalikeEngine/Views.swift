// Views: several vectors per item (a product photographed from several sides).
//
// An item's first vector is the element itself; each further vector is a view, stored as a
// member of its own named item + U+001F + view name (`VADD … element VIEW side`), so every
// index, segment, seal, compaction and recovery path handles it as any member. What makes
// them one item:
//   - searches map each hit to its item and keep the item once, at its best score, widening
//     until k distinct items are found (QueryPlan.swift `collect`, `run`);
//   - a view's attributes are always its item's (copied when the view is added, and whenever
//     the item's change), so filters see the item; setting them on a view is refused;
//   - removing the item removes its views, in the same transaction;
//   - VCARD counts items: the views table (c<N>/views) is subtracted.
// A view needs its item: adding one to a missing element is refused.
// Threads: pure functions.

public enum Views {
    public static let separator: Character = "\u{1F}"
    /// The separator as the byte in a stored key (one byte in UTF-8).
    public static let separatorByte: UInt8 = 0x1F

    /// The item a member belongs to, and the view's name when the member is a view.
    public static func split(_ member: String) -> (item: String, view: String?) {
        guard let i = member.firstIndex(of: separator) else { return (member, nil) }
        return (String(member[..<i]), String(member[member.index(after: i)...]))
    }

    /// The member that stores an item's view.
    public static func member(item: String, view: String) -> String { item + String(separator) + view }
}
