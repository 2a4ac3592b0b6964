internal import Crypto
internal import FarmProtocol
internal import Foundation
internal import Logging
package import NIOSSL
internal import SwiftASN1
internal import X509

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// How the coordinator's node port is secured.
///
/// Every TLS mode presents one certificate; the node does not check its chain (it needs no certificate set-up),
/// it binds its join proof to the certificate's hash instead (``ChannelBinding``).
public enum NodeChannelSecurity: Sendable {
    /// TLS with a self-signed certificate generated on the first start and kept in the data directory
    /// (`tls/node-cert.pem`, and `tls/node-key.pem` readable by its owner only).
    case tlsCertificateInDataDirectory
    /// TLS with the certificate chain (PEM, leaf first) and private key (PEM) in these files.
    case tlsCertificateFiles(certificate: String, key: String)
    /// TLS with a certificate chain and private key given as PEM text (`FARM_TLS_CERT`/`FARM_TLS_KEY`, as
    /// `farm keys` prints them).
    case tlsCertificatePEM(certificate: String, key: String)
    /// TLS with a self-signed certificate made in memory for this process only (the embedded `farm render`).
    case tlsEphemeralCertificate
    /// Plain TCP: no encryption, and a join proof bound to nothing. Only when explicitly asked for.
    case insecurePlainTCP
}

extension NodeChannelSecurity {
    /// The certificate and key files `tlsCertificateInDataDirectory` keeps in `dataDirectory`.
    public static func certificateFiles(dataDirectory: String) -> (certificate: String, key: String) {
        let paths = NodeTLSIdentity.paths(dataDirectory: dataDirectory)
        return (paths.certificate, paths.key)
    }
}

extension NodeChannelSecurity {
    /// What `farm keys` made or found: the two files and the pin of the key.
    public struct KeyFiles: Sendable {
        public var certificate: String
        public var key: String
        /// ``CoordinatorKeyPin`` of the certificate's public key.
        public var pin: String
        public var created: Bool
    }

    /// Makes a self-signed node-port certificate and key in `directory` (`node-cert.pem`, and `node-key.pem` readable
    /// by its owner only), or reads the ones already there; returns them with the key's pin.
    public static func makeKeyFiles(directory: String, subject: String) throws -> KeyFiles {
        let certificate = directory + "/node-cert.pem"
        let key = directory + "/node-key.pem"
        let manager = FileManager.default
        var created = false
        if !manager.fileExists(atPath: certificate) || !manager.fileExists(atPath: key) {
            guard !manager.fileExists(atPath: certificate), !manager.fileExists(atPath: key) else {
                throw CoordinatorError(.io, "\(directory) holds only one of node-cert.pem and node-key.pem; remove it to make both")
            }
            let (pem, keyPEM) = try NodeTLSIdentity.generate(subject: subject)
            try NodeTLSIdentity.createDirectory(directory)
            try writeFileAtomically(keyPEM, to: key, mode: 0o600)
            try writeFileAtomically(pem, to: certificate, mode: 0o644)
            created = true
        }
        let identity = try NodeTLSIdentity.make(
            .tlsCertificateFiles(certificate: certificate, key: key), dataDirectory: "", subject: subject,
            logger: Logger(label: "farm.keys"))!
        return KeyFiles(certificate: certificate, key: key, pin: identity.pin, created: created)
    }
}

/// A server TLS context with a certificate made in memory, as the embedded farm's coordinator uses
/// (for the wire benchmark).
package func ephemeralNodeTLSContext(subject: String) throws -> NIOSSLContext {
    try NodeTLSIdentity.make(.tlsEphemeralCertificate, dataDirectory: "", subject: subject, logger: Logger(label: "farm.tls"))!
        .context
}

/// The certificate and key the coordinator presents to nodes, with the TLS context made from them.
struct NodeTLSIdentity: Sendable {
    let context: NIOSSLContext
    /// What the context was made from (the HTTP API's HTTPS serves the same identity from it).
    let configuration: TLSConfiguration
    /// The `tls-server-end-point` binding of the leaf certificate.
    let binding: ChannelBinding
    /// Where the certificate came from, for the log.
    let origin: String
    /// SHA-256 of the leaf's public key (``CoordinatorKeyPin``), what `farm node --coordinator-key-sha256` pins.
    let pin: String

    /// Where the certificate and key live in a data directory.
    static func paths(dataDirectory: String) -> (directory: String, certificate: String, key: String) {
        let directory = dataDirectory + "/tls"
        return (directory, directory + "/node-cert.pem", directory + "/node-key.pem")
    }

    /// The identity for `security`, or nil for plain TCP.
    static func make(
        _ security: NodeChannelSecurity, dataDirectory: String, subject: String, logger: Logger
    ) throws -> NodeTLSIdentity? {
        switch security {
        case .insecurePlainTCP:
            return nil
        case .tlsEphemeralCertificate:
            let (certificate, key) = try generate(subject: subject)
            return try NodeTLSIdentity(certificatePEM: certificate, keyPEM: key, origin: "generated in memory")
        case .tlsCertificateFiles(let certificate, let key):
            return try load(certificate: certificate, key: key, logger: logger)
        case .tlsCertificatePEM(let certificate, let key):
            do {
                return try NodeTLSIdentity(certificatePEM: certificate, keyPEM: key, origin: "read from FARM_TLS_CERT and FARM_TLS_KEY")
            } catch {
                throw CoordinatorError(.invalidRequest, "FARM_TLS_CERT and FARM_TLS_KEY do not make a TLS identity (\(error))")
            }
        case .tlsCertificateInDataDirectory:
            let paths = paths(dataDirectory: dataDirectory)
            let manager = FileManager.default
            if manager.fileExists(atPath: paths.certificate) {
                guard manager.fileExists(atPath: paths.key) else {
                    throw CoordinatorError(
                        .io,
                        "\(paths.certificate) exists but its key \(paths.key) does not; remove the certificate to "
                            + "have a new one generated")
                }
                return try load(certificate: paths.certificate, key: paths.key, logger: logger)
            }
            // A key without its certificate is what an interrupted first start leaves: both are made anew.
            let (certificate, key) = try generate(subject: subject)
            try createDirectory(paths.directory)
            try writeFileAtomically(key, to: paths.key, mode: 0o600)
            try writeFileAtomically(certificate, to: paths.certificate, mode: 0o644)
            return try NodeTLSIdentity(
                certificatePEM: certificate, keyPEM: key, origin: "generated and saved in \(paths.directory)")
        }
    }

    private init(certificatePEM: String, keyPEM: String, origin: String) throws {
        let chain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8))
        let key = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
        try self.init(chain: chain, key: key, origin: origin)
    }

    private init(chain: [NIOSSLCertificate], key: NIOSSLPrivateKey, origin: String) throws {
        guard let leaf = chain.first else { throw CoordinatorError(.invalidRequest, "\(origin): no certificate") }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        self.context = try NIOSSLContext(configuration: configuration)
        self.configuration = configuration
        self.binding = .tlsServerEndPoint(certificateDER: try leaf.toDERBytes())
        self.pin = CoordinatorKeyPin.sha256Hex(spki: try leaf.extractPublicKey().toSPKIBytes())
        self.origin = origin
    }

    private static func load(certificate: String, key: String, logger: Logger) throws -> NodeTLSIdentity {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificate)
        } catch {
            throw CoordinatorError(.invalidRequest, "\(certificate): not a readable PEM certificate (\(error))")
        }
        let privateKey: NIOSSLPrivateKey
        do {
            privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
        } catch {
            throw CoordinatorError(.invalidRequest, "\(key): not a readable PEM private key (\(error))")
        }
        let mode = (try? FileManager.default.attributesOfItem(atPath: key))?[.posixPermissions] as? Int ?? 0
        if mode & 0o077 != 0 {
            logger.warning(
                "the node TLS key file is readable by other users", metadata: ["file": "\(key)"])
        }
        do {
            return try NodeTLSIdentity(chain: chain, key: privateKey, origin: "loaded from \(certificate)")
        } catch {
            throw CoordinatorError(.invalidRequest, "\(certificate) and \(key) do not make a TLS identity (\(error))")
        }
    }

    /// A self-signed P-256 certificate and its key, both PEM.
    static func generate(subject: String) throws -> (certificate: String, key: String) {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            CommonName("farm coordinator \(subject)")
        }
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(),
            publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(20 * 365 * 86400),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
            },
            issuerPrivateKey: Certificate.PrivateKey(key))
        return (try certificate.serializeAsPEM().pemString, key.pemRepresentation)
    }

    static func createDirectory(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(
                atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw CoordinatorError(.io, "cannot create \(path): \(error)")
        }
    }
}

/// Writes `text` to a temporary file created with `mode` (never wider), then renames it into place.
func writeFileAtomically(_ text: String, to path: String, mode: mode_t) throws {
    let temporary = "\(path).tmp-\(UInt32.random(in: 0...UInt32.max))"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
    guard fd >= 0 else { throw CoordinatorError(.io, "cannot create \(temporary): \(String(cString: strerror(errno)))") }
    let bytes = Array(text.utf8)
    var written = 0
    while written < bytes.count {
        let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0, errno == EINTR { continue }
        guard n > 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            unlink(temporary)
            throw CoordinatorError(.io, "cannot write \(temporary): \(reason)")
        }
        written += n
    }
    // The mode asked for at creation is narrowed by the umask; the key must end up exactly owner-only.
    fchmod(fd, mode)
    fsync(fd)
    close(fd)
    guard rename(temporary, path) == 0 else {
        let reason = String(cString: strerror(errno))
        unlink(temporary)
        throw CoordinatorError(.io, "cannot rename \(temporary) to \(path): \(reason)")
    }
}
