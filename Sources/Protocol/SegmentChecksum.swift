public import NIOCore
import CXXHash

/// The checksum of a segment's bytes, XXH3-128, computed as they stream past.
///
/// Both directions of a transfer carry one: ``Assign/checksum`` for the source segment and ``TaskResult/checksum``
/// for the encoded one. The receiver computes its own over the data chunks and compares before it trusts the bytes,
/// and the coordinator's job store records them so that a resume can check the files it finds.
///
/// It detects damage (a flipped bit in transit or on disk, a truncated or altered file), not forgery: what a node
/// sends is its own work whatever checksum it attaches, and TLS with the join proofs is what keeps others off the
/// connection. XXH3 hashes at many GB/s per core on any x86-64 or ARM64 CPU, while SHA-256, which earlier protocol
/// versions used, took a fifth of the CPU of a loopback transfer even with SHA extensions and far more without them.
///
/// A value type: a copy shares the hashing state until either side adds bytes.
public struct SegmentChecksum: Sendable {
    /// The size of a checksum, 16 bytes.
    public static let byteCount = 16

    private var state: HashState

    /// Creates a checksum over no bytes yet.
    public init() {
        self.state = HashState()
    }

    /// Adds the readable bytes of `bytes`.
    public mutating func update(_ bytes: ByteBuffer) {
        bytes.withUnsafeReadableBytes { self.update($0) }
    }

    /// Adds `bytes`.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        if !isKnownUniquelyReferenced(&self.state) { self.state = HashState(copying: self.state) }
        _ = XXH3_128bits_update(self.state.pointer, base, bytes.count)
    }

    /// The XXH3-128 of all bytes added so far, in its canonical (big-endian) form, as `xxh128sum` prints it. More
    /// bytes may still be added afterwards.
    public func finalize() -> [UInt8] {
        var canonical = XXH128_canonical_t()
        XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(self.state.pointer))
        return withUnsafeBytes(of: canonical.digest) { Array($0) }
    }

    /// An XXH3 state, allocated by libxxhash and freed when the last copy of a checksum that uses it goes.
    private final class HashState: @unchecked Sendable {
        // Mutated only through a uniquely referenced `SegmentChecksum` (see `update`), read otherwise.
        let pointer: OpaquePointer

        init() {
            guard let pointer = XXH3_createState() else { fatalError("out of memory for an XXH3 state") }
            self.pointer = pointer
            _ = XXH3_128bits_reset(pointer)
        }

        init(copying other: HashState) {
            guard let pointer = XXH3_createState() else { fatalError("out of memory for an XXH3 state") }
            self.pointer = pointer
            XXH3_copyState(pointer, other.pointer)
        }

        deinit {
            _ = XXH3_freeState(self.pointer)
        }
    }
}

/// A hash computed over bytes as they stream past: ``SegmentChecksum`` or ``SHA256Stream``.
public protocol StreamingChecksum: Sendable {
    init()
    mutating func update(_ bytes: UnsafeRawBufferPointer)
    func finalize() -> [UInt8]
}

extension SegmentChecksum: StreamingChecksum {}
extension SHA256Stream: StreamingChecksum {}

/// Lowercase hexadecimal, two digits a byte: how checksums, digests and certificate fingerprints are shown.
public enum Hex {
    /// Formats `bytes`.
    public static func encode(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        return String(unsafeUninitializedCapacity: bytes.count * 2) { output in
            for (index, byte) in bytes.enumerated() {
                output[2 * index] = digits[Int(byte >> 4)]
                output[2 * index + 1] = digits[Int(byte & 0x0f)]
            }
            return bytes.count * 2
        }
    }

    /// The bytes of `text` (two hexadecimal digits a byte, either case), or nil when it is not that.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: c - 0x30
            case 0x61...0x66: c - 0x61 + 10
            case 0x41...0x46: c - 0x41 + 10
            default: nil
            }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count / 2)
        for index in stride(from: 0, to: utf8.count, by: 2) {
            guard let high = value(utf8[index]), let low = value(utf8[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        return bytes
    }
}
