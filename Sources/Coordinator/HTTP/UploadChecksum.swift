internal import Crypto
internal import Foundation
internal import NIOCore

/// The digest a client sent with a chunk (tus `Upload-Checksum: ALGORITHM BASE64`), computed over the chunk's
/// bytes as they stream past and compared once the chunk is whole.
struct UploadChecksum {
    /// The algorithms this server computes; tus requires sha1 of every server with the checksum extension.
    enum Algorithm: String, CaseIterable {
        case sha1, sha256, sha512, md5
    }

    private enum Running {
        case sha1(Insecure.SHA1)
        case sha256(SHA256)
        case sha512(SHA512)
        case md5(Insecure.MD5)
    }

    let algorithm: Algorithm
    let expected: [UInt8]
    private var running: Running

    /// The algorithms, comma-separated, as `Tus-Checksum-Algorithm` lists them.
    static let advertised = Algorithm.allCases.map(\.rawValue).joined(separator: ",")

    /// Parses an `Upload-Checksum` header; a clear message for a malformed one or an algorithm not offered.
    static func parse(_ header: String) throws -> UploadChecksum {
        let parts = header.trimmingCharacters(in: .whitespaces).split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 2 else {
            throw APIError.badRequest("Upload-Checksum '\(header.prefix(100))' is not of the form ALGORITHM BASE64-DIGEST")
        }
        guard let algorithm = Algorithm(rawValue: parts[0].lowercased()) else {
            throw APIError.badRequest("Upload-Checksum algorithm '\(parts[0].prefix(30))' is not supported; use one of \(advertised)")
        }
        guard let digest = Data(base64Encoded: String(parts[1])) else {
            throw APIError.badRequest("Upload-Checksum digest '\(parts[1].prefix(100))' is not base64")
        }
        let checksum = UploadChecksum(algorithm: algorithm, expected: Array(digest))
        guard digest.count == checksum.byteCount else {
            throw APIError.badRequest(
                "Upload-Checksum \(algorithm.rawValue) digest has \(digest.count) bytes; a \(algorithm.rawValue) digest has \(checksum.byteCount)")
        }
        return checksum
    }

    init(algorithm: Algorithm, expected: [UInt8]) {
        self.algorithm = algorithm
        self.expected = expected
        switch algorithm {
        case .sha1: running = .sha1(Insecure.SHA1())
        case .sha256: running = .sha256(SHA256())
        case .sha512: running = .sha512(SHA512())
        case .md5: running = .md5(Insecure.MD5())
        }
    }

    private var byteCount: Int {
        switch algorithm {
        case .sha1: Insecure.SHA1.byteCount
        case .sha256: SHA256.byteCount
        case .sha512: SHA512.byteCount
        case .md5: Insecure.MD5.byteCount
        }
    }

    mutating func update(_ bytes: ByteBuffer) {
        func added<Hash: HashFunction>(_ hash: Hash, _ pointer: UnsafeRawBufferPointer) -> Hash {
            var hash = hash
            hash.update(bufferPointer: pointer)
            return hash
        }
        bytes.withUnsafeReadableBytes { pointer in
            switch running {
            case .sha1(let hash): running = .sha1(added(hash, pointer))
            case .sha256(let hash): running = .sha256(added(hash, pointer))
            case .sha512(let hash): running = .sha512(added(hash, pointer))
            case .md5(let hash): running = .md5(added(hash, pointer))
            }
        }
    }

    func finalize() -> [UInt8] {
        switch running {
        case .sha1(let hash): Array(hash.finalize())
        case .sha256(let hash): Array(hash.finalize())
        case .sha512(let hash): Array(hash.finalize())
        case .md5(let hash): Array(hash.finalize())
        }
    }
}
