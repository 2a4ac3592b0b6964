public import NIOCore
import Crypto

/// A SHA-256 computed as bytes stream past: the digest the HTTP API gives and checks for uploaded sources (the
/// `sha256` fields), which clients compare with `sha256sum`. Segment transfers use ``SegmentChecksum``.
public struct SHA256Stream: @unchecked Sendable {
    /// The size of a digest, 32 bytes.
    public static let byteCount = 32

    // swift-crypto 3 does not mark `SHA256` Sendable (version 4 does), but it is a value type with copy-on-write
    // storage: `update` copies a shared context before mutating it, and `finalize` only reads it.
    private var hash = SHA256()

    /// Creates a digest over no bytes yet.
    public init() {}

    /// Adds the readable bytes of `bytes`.
    public mutating func update(_ bytes: ByteBuffer) {
        bytes.withUnsafeReadableBytes { self.hash.update(bufferPointer: $0) }
    }

    /// Adds `bytes`.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        self.hash.update(bufferPointer: bytes)
    }

    /// The SHA-256 of all bytes added so far. More bytes may still be added afterwards.
    public func finalize() -> [UInt8] {
        Array(self.hash.finalize())
    }
}
