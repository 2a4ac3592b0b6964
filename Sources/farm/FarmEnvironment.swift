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
    /// `FARM_SERVER`: the coordinator's HTTP API for the client commands.
    var server: String? { nonEmpty("FARM_SERVER") }
    /// `FARM_LOG_LEVEL`: the log level when `--log-level` is not given.
    var logLevel: String? { nonEmpty("FARM_LOG_LEVEL") }
    /// `FARM_TEST_HARDWARE_STANDIN`: tests only, a software encoder that stands in for a hardware one.
    var testHardwareStandIn: String? { nonEmpty("FARM_TEST_HARDWARE_STANDIN") }
    /// `FARM_TEST_HARDWARE_FAULT`: tests only, a hardware fault to inject.
    var testHardwareFault: String? { nonEmpty("FARM_TEST_HARDWARE_FAULT") }

    private func nonEmpty(_ name: String) -> String? {
        guard let value = values[name], !value.isEmpty else { return nil }
        return value
    }
}
