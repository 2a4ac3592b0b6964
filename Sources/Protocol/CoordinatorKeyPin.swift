internal import Crypto
internal import Foundation

/// A node's pin of its coordinator: the SHA-256 of the coordinator's public key (the DER SubjectPublicKeyInfo of
/// its node-port certificate), 64 hexadecimal digits. `farm keys` prints it when it makes the key; `farm node
/// --coordinator-key-sha256` refuses a coordinator whose key hashes to anything else, so a node can be told
/// its coordinator before it is deployed, and a party that holds the join token but not the coordinator's key
/// cannot pose as the coordinator.
public enum CoordinatorKeyPin {
    /// The pin of a public key, from its DER SubjectPublicKeyInfo.
    public static func sha256Hex(spki: some Sequence<UInt8>) -> String {
        Hex.encode(Array(SHA256.hash(data: Array(spki))))
    }

    /// A pin as an operator writes it: 64 hexadecimal digits, in either case, with or without colons between the
    /// bytes. Nil when it is not one.
    public static func parse(_ text: String) -> String? {
        let digits = text.trimmingCharacters(in: .whitespacesAndNewlines).filter { $0 != ":" }
        guard digits.count == 64, let bytes = Hex.decode(digits) else { return nil }
        return Hex.encode(bytes)
    }
}
