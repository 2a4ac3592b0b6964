import ArgumentParser
import FarmCoordinator
import FarmProtocol
import Foundation

/// `farm keys`: makes the coordinator's node-port key and certificate before deployment and prints the pin that
/// nodes check (`farm node --coordinator-key-sha256`), so that the SDL files can carry both.
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Make the coordinator's node-port key and certificate, and print the pin nodes check.")

    @Option(help: "Directory to write node-cert.pem and node-key.pem to (created; existing files are kept and re-read).")
    var out = "./farm-keys"

    @Option(help: "A name for the certificate's subject.")
    var name = "farm coordinator"

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() async throws {
        let made: NodeChannelSecurity.KeyFiles
        do {
            made = try NodeChannelSecurity.makeKeyFiles(directory: out, subject: name)
        } catch {
            fail("\(error)")
        }
        let certificate = Data(try String(contentsOfFile: made.certificate, encoding: .utf8).utf8).base64EncodedString()
        let key = Data(try String(contentsOfFile: made.key, encoding: .utf8).utf8).base64EncodedString()
        if json {
            let object: [String: String] = [
                "certificate": made.certificate, "key": made.key, "spki_sha256": made.pin,
                "FARM_TLS_CERT": certificate, "FARM_TLS_KEY": key,
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print(
            """
            \(made.created ? "made" : "kept") \(made.certificate) and \(made.key) (mode 0600)
            coordinator key SHA-256 (SPKI): \(made.pin)

            The coordinator presents them with --tls-cert/--tls-key, or from its environment (base64 of the PEM files):
              FARM_TLS_CERT=\(certificate)
              FARM_TLS_KEY=\(key)
            Every node checks it with --coordinator-key-sha256 \(made.pin)
              (or FARM_COORDINATOR_KEY_SHA256=\(made.pin)).
            """)
    }
}
