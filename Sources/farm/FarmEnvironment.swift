import FarmNode
import Foundation

/// Every environment variable the farm command reads, read here and nowhere else in it: the library
/// modules take these values as parameters.
struct FarmEnvironment: Sendable {
    /// This process's environment.
    static let current = FarmEnvironment(ProcessInfo.processInfo.environment)

    private let values: [String: String]

    init(_ values: [String: String]) { self.values = values }

    /// `FARM_JOIN_TOKEN`: the secret nodes prove when they join.
    var joinToken: String? { nonEmpty("FARM_JOIN_TOKEN") }
    /// `FARM_API_TOKEN`: the HTTP API's bearer token.
    var apiToken: String? { nonEmpty("FARM_API_TOKEN") }
    /// `FARM_TLS_CERT` and `FARM_TLS_KEY`: the coordinator's node-port certificate chain and key, PEM or base64 of
    /// PEM (as `farm keys` prints them).
    var tlsCertificate: String? { nonEmpty("FARM_TLS_CERT") }
    var tlsKey: String? { nonEmpty("FARM_TLS_KEY") }
    /// `FARM_COORDINATOR_KEY_SHA256`: the pin a node checks its coordinator's key against.
    var coordinatorKeySHA256: String? { nonEmpty("FARM_COORDINATOR_KEY_SHA256") }
    /// `FARM_SERVER`: the coordinator's HTTP API for the client commands.
    var server: String? { nonEmpty("FARM_SERVER") }
    /// `FARM_LOG_LEVEL`: the log level when `--log-level` is not given.
    var logLevel: String? { nonEmpty("FARM_LOG_LEVEL") }
    /// The node's test-only fault switches (`FARM_TEST_FAIL_TASKS` and the others of `TestFaults`), by name.
    var nodeTestFaults: [String: String] {
        Dictionary(uniqueKeysWithValues: TestFaults.names.compactMap { name in nonEmpty(name).map { (name, $0) } })
    }
    /// `FARM_TEST_HARDWARE_STANDIN`: tests only, a software encoder that stands in for a hardware one.
    var testHardwareStandIn: String? { nonEmpty("FARM_TEST_HARDWARE_STANDIN") }
    /// `FARM_TEST_HARDWARE_FAULT`: tests only, a hardware fault to inject.
    var testHardwareFault: String? { nonEmpty("FARM_TEST_HARDWARE_FAULT") }

    /// PEM text given as itself or as its base64 (one line, easier to carry in an SDL file's `env`).
    static func pem(_ value: String) -> String? {
        if value.contains("-----BEGIN") { return value }
        guard let data = Data(base64Encoded: value.filter { !$0.isWhitespace }) else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        return text.contains("-----BEGIN") ? text : nil
    }

    private func nonEmpty(_ name: String) -> String? {
        guard let value = values[name], !value.isEmpty else { return nil }
        return value
    }
}
