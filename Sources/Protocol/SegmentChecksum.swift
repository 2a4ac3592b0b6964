public import NIOCore
import Crypto

/// The SHA-256 checksum of a segment's bytes, computed as they stream past.
///
/// Both directions of a transfer carry one: ``Assign/checksum`` for the source segment and ``TaskResult/checksum``
/// for the encoded one. The receiver computes its own over the data chunks and compares before it trusts the bytes.
public struct SegmentChecksum: @unchecked Sendable {
    /// The size of a checksum, 32 bytes.
    public static let byteCount = 32

    // swift-crypto 3 does not mark `SHA256` Sendable (version 4 does), but it is a value type with copy-on-write
    // storage: `update` copies a shared context before mutating it, and `finalize` only reads it.
    private var hash: SHA256

    /// Creates a checksum over no bytes yet.
    public init() {
        self.hash = SHA256()
    }

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

    /// Formats bytes as lowercase hexadecimal, two digits a byte.
    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        return String(unsafeUninitializedCapacity: bytes.count * 2) { output in
            for (index, byte) in bytes.enumerated() {
                output[2 * index] = digits[Int(byte >> 4)]
                output[2 * index + 1] = digits[Int(byte & 0x0f)]
            }
            return bytes.count * 2
        }
    }
}
