import ArgumentParser
import FarmCoordinator
import FarmHWEncode
import FarmMedia
import FarmNode
import FarmProtocol
import Foundation
import Logging

/// `farm probe`: what this machine can encode with, as JSON.
struct Probe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print this machine's encoding capabilities (VA-API, NVENC, QSV, software) as JSON.")

    @Option(help: "Seconds before a stuck driver is given up on.")
    var timeout = 10.0

    func run() async throws {
        MediaLog.quiet()
        let report = HardwareProbe.run(timeout: .milliseconds(Int(timeout * 1000)))
        print(report.jsonString(pretty: true))
    }
}
