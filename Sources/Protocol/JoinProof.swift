import Crypto

/// Mutual authentication of a node and a coordinator that share a join token, without sending the token.
///
/// The coordinator sends a fresh nonce in its ``Challenge``; the node answers with ``node(token:nonce:nodeID:)``
/// in its ``Hello``; the coordinator checks it and answers with ``coordinator(token:nonce:nodeID:)`` in its
/// ``Welcome``, which the node checks in turn. Each proof is an HMAC-SHA256 keyed by the token over
///
///     label ‖ 0x00 ‖ UInt32(nonce.count) ‖ nonce ‖ UInt32(nodeID.utf8.count) ‖ nodeID
///
/// with integers big-endian and `label` the ASCII string `farm-join-v1 node` or `farm-join-v1 coordinator`,
/// so neither side's proof can be replayed as the other's, nor for another node or another connection.
public enum JoinProof {
    /// The size of a proof and of a nonce, 32 bytes.
    public static let byteCount = 32

    /// The proof a node sends in its ``Hello``.
    public static func node(token: String, nonce: [UInt8], nodeID: String) -> [UInt8] {
        self.proof(label: "farm-join-v1 node", token: token, nonce: nonce, nodeID: nodeID)
    }

    /// The proof the coordinator sends in its ``Welcome``.
    public static func coordinator(token: String, nonce: [UInt8], nodeID: String) -> [UInt8] {
        self.proof(label: "farm-join-v1 coordinator", token: token, nonce: nonce, nodeID: nodeID)
    }

    /// Compares a received proof with the expected one in constant time.
    ///
    /// - Returns: `true` if both are non-empty and equal.
    public static func verify(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        // The length is no secret; the contents are, so every byte is compared whatever the first difference.
        guard a.count == b.count, !a.isEmpty else {
            return false
        }
        var difference: UInt8 = 0
        for (x, y) in zip(a, b) {
            difference |= x ^ y
        }
        return difference == 0
    }

    /// Makes a fresh 32-byte nonce from the system's cryptographically secure random number generator.
    public static func makeNonce() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        var nonce: [UInt8] = []
        nonce.reserveCapacity(byteCount)
        for _ in 0..<(byteCount / 8) {
            withUnsafeBytes(of: generator.next() as UInt64) { nonce.append(contentsOf: $0) }
        }
        return nonce
    }

    private static func proof(label: String, token: String, nonce: [UInt8], nodeID: String) -> [UInt8] {
        var message: [UInt8] = []
        message.reserveCapacity(label.utf8.count + 1 + 4 + nonce.count + 4 + nodeID.utf8.count)
        message.append(contentsOf: label.utf8)
        message.append(0)
        message.appendBigEndian(UInt32(nonce.count))
        message.append(contentsOf: nonce)
        message.appendBigEndian(UInt32(nodeID.utf8.count))
        message.append(contentsOf: nodeID.utf8)

        let key = SymmetricKey(data: Array(token.utf8))
        return Array(HMAC<SHA256>.authenticationCode(for: message, using: key))
    }
}

extension [UInt8] {
    fileprivate mutating func appendBigEndian(_ value: UInt32) {
        Swift.withUnsafeBytes(of: value.bigEndian) { self.append(contentsOf: $0) }
    }
}
