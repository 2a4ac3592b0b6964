import Crypto

/// What ties a join proof to one transport connection, so that a proof made on one connection is worthless on
/// another (RFC 5056 channel bindings).
///
/// Over TLS it is the RFC 5929 `tls-server-end-point` binding: the ASCII prefix `tls-server-end-point:` followed by
/// the SHA-256 of the DER bytes of the server's (the coordinator's) leaf certificate, as the coordinator presents
/// it and as the node received it. A man in the middle who terminates TLS with a certificate of its own makes the
/// two sides compute different bindings, so neither side's proof verifies at the other, and relaying them is of no
/// use. Over plain TCP (only when asked for) the binding is empty.
public struct ChannelBinding: Sendable, Hashable, CustomStringConvertible {
    /// The bytes that go into the proof.
    public let bytes: [UInt8]

    /// The RFC 5056 prefix of the `tls-server-end-point` channel binding type.
    public static let tlsServerEndPointPrefix = "tls-server-end-point:"

    /// No binding: the connection is plain TCP.
    public static let plainTCP = ChannelBinding(bytes: [])

    /// The `tls-server-end-point` binding of a server certificate, given its DER bytes.
    ///
    /// RFC 5929 hashes with the certificate's signature hash, and with SHA-256 when that is MD5 or SHA-1; farm always
    /// uses SHA-256, which is the same for the ECDSA-SHA256 and RSA-SHA256 certificates coordinators use.
    public static func tlsServerEndPoint(certificateDER: some Sequence<UInt8>) -> ChannelBinding {
        let hash = SHA256.hash(data: Array(certificateDER))
        return ChannelBinding(bytes: Array(tlsServerEndPointPrefix.utf8) + Array(hash))
    }

    /// The certificate hash in hexadecimal (its SHA-256 fingerprint), or `plain TCP` for the empty binding.
    public var description: String {
        let prefix = Self.tlsServerEndPointPrefix.utf8.count
        guard bytes.count > prefix else { return "plain TCP" }
        return Hex.encode(Array(bytes[prefix...]))
    }

    /// Whether this is the empty binding of a plain TCP connection.
    public var isPlainTCP: Bool { bytes.isEmpty }
}

/// Mutual authentication of a node and a coordinator that share a join token, without sending the token.
///
/// The coordinator sends a fresh nonce in its ``Challenge``; the node answers with
/// ``node(token:nonce:nodeID:channelBinding:)`` in its ``Hello``; the coordinator checks it and answers with
/// ``coordinator(token:nonce:nodeID:channelBinding:)`` in its ``Welcome``, which the node checks in turn. Each proof
/// is an HMAC-SHA256 keyed by the token over
///
///     label ‖ 0x00 ‖ UInt32(nonce.count) ‖ nonce ‖ UInt32(nodeID.utf8.count) ‖ nodeID
///           ‖ UInt32(binding.count) ‖ binding
///
/// with integers big-endian, `label` the ASCII string `farm-join-v2 node` or `farm-join-v2 coordinator`, and
/// `binding` the ``ChannelBinding`` of the connection, so neither side's proof can be replayed as the other's, nor
/// for another node, another connection, or through a TLS-terminating man in the middle.
public enum JoinProof {
    /// The size of a proof and of a nonce, 32 bytes.
    public static let byteCount = 32

    /// The proof a node sends in its ``Hello``.
    public static func node(token: String, nonce: [UInt8], nodeID: String, channelBinding: ChannelBinding) -> [UInt8] {
        self.proof(label: "farm-join-v2 node", token: token, nonce: nonce, nodeID: nodeID, binding: channelBinding)
    }

    /// The secret a proof is made with for a node that joins with its credential (instead of the join token).
    public static func credentialSecret(_ credential: [UInt8]) -> String {
        "credential:" + Hex.encode(credential)
    }

    /// A fresh credential for a node being enrolled (32 bytes from the system's CSPRNG).
    public static func makeCredential() -> [UInt8] { makeNonce() }

    /// The proof the coordinator sends in its ``Welcome``.
    public static func coordinator(
        token: String, nonce: [UInt8], nodeID: String, channelBinding: ChannelBinding
    ) -> [UInt8] {
        self.proof(
            label: "farm-join-v2 coordinator", token: token, nonce: nonce, nodeID: nodeID, binding: channelBinding)
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

    private static func proof(
        label: String, token: String, nonce: [UInt8], nodeID: String, binding: ChannelBinding
    ) -> [UInt8] {
        var message: [UInt8] = []
        message.reserveCapacity(label.utf8.count + 1 + 4 + nonce.count + 4 + nodeID.utf8.count + 4 + binding.bytes.count)
        message.append(contentsOf: label.utf8)
        message.append(0)
        message.appendBigEndian(UInt32(nonce.count))
        message.append(contentsOf: nonce)
        message.appendBigEndian(UInt32(nodeID.utf8.count))
        message.append(contentsOf: nodeID.utf8)
        message.appendBigEndian(UInt32(binding.bytes.count))
        message.append(contentsOf: binding.bytes)

        let key = SymmetricKey(data: Array(token.utf8))
        return Array(HMAC<SHA256>.authenticationCode(for: message, using: key))
    }
}

extension [UInt8] {
    fileprivate mutating func appendBigEndian(_ value: UInt32) {
        Swift.withUnsafeBytes(of: value.bigEndian) { self.append(contentsOf: $0) }
    }
}
