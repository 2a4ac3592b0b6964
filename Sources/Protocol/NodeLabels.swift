internal import Foundation

/// Labels of node pools: short names (`trusted`, `gpu`, `eu-west`) that jobs may require of the nodes their
/// segments go to. A node claims labels in its hello's capabilities (`"labels": [...]`, from `farm node --label`);
/// the coordinator gives labels to node ids itself (`--node-label ID=LABEL`) and believes claims only when told
/// to (`--accept-node-labels`), since any holder of the join token can claim anything.
public enum NodeLabels {
    /// Labels a node or a job may carry at most.
    public static let maxCount = 16

    /// Whether `label` is 1 to 32 of `a-z 0-9 . _ -`, starting with a letter or digit.
    public static func isValid(_ label: String) -> Bool {
        guard (1...32).contains(label.utf8.count), let first = label.utf8.first else { return false }
        let allowed = { (c: UInt8) in (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2E || c == 0x5F || c == 0x2D }
        return allowed(first) && first != 0x2E && first != 0x5F && first != 0x2D && label.utf8.allSatisfy(allowed)
    }

    /// Why `labels` cannot be used, or nil: each valid, at most ``maxCount``.
    public static func problem(_ labels: [String]) -> String? {
        if labels.count > maxCount { return "\(labels.count) labels; at most \(maxCount)" }
        if let bad = labels.first(where: { !isValid($0) }) {
            return "label '\(bad)' must be 1 to 32 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
        }
        return nil
    }

    /// The valid labels a node's capabilities JSON claims (anything else in it is ignored).
    public static func claimed(in capabilitiesJSON: String) -> [String] {
        guard let data = capabilitiesJSON.data(using: .utf8),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let labels = object["labels"] as? [String]
        else { return [] }
        return Array(Set(labels.prefix(maxCount).filter(isValid))).sorted()
    }
}
