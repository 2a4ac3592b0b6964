import ArgumentParser
import FarmMedia
import Foundation
import Logging

/// The farm command line: each subcommand parses its options and calls a builder, nothing more.
@main
struct Farm: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "farm",
        abstract: "A render farm: split long videos at keyframes, encode the segments on nodes, join them exactly.",
        subcommands: [Render.self, CoordinatorCommand.self, NodeCommand.self, KeysCommand.self, Probe.self, Tiers.self, Submit.self, Jobs.self, Nodes.self, Cancel.self,
            Capacity.self,
        ])
}

/// Options every subcommand shares.
struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String?

    @Flag(name: .long, help: "Log JSON lines instead of text.")
    var jsonLogs = false

    func bootstrap(default level: Logger.Level) {
        let chosen = logLevel.flatMap(Logger.Level.init(rawValue:))
            ?? FarmEnvironment.current.logLevel.flatMap(Logger.Level.init(rawValue:)) ?? level
        let json = jsonLogs
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler =
                json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = chosen
            return handler
        }
        MediaLog.quiet()
        ProcessMemory.returnLargeBlocks()
    }
}

/// Reads a shared secret from a file, else from the environment's value, never from the command line.
func readSecret(environment value: String?, file: String?) throws -> String? {
    if let file {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ValidationError("cannot read \(file)")
        }
        let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { throw ValidationError("\(file) is empty") }
        return token
    }
    return value
}

/// Splits "HOST:PORT" (IPv6 as "[::1]:PORT").
func parseHostPort(_ value: String, what: String) throws -> (String, Int) {
    var host = value
    var portText = ""
    if value.hasPrefix("["), let close = value.firstIndex(of: "]") {
        host = String(value[value.index(after: value.startIndex)..<close])
        portText = String(value[value.index(after: close)...].dropFirst())
    } else if let colon = value.lastIndex(of: ":") {
        host = String(value[..<colon])
        portText = String(value[value.index(after: colon)...])
    }
    guard let port = Int(portText), (0...65535).contains(port), !host.isEmpty else {
        throw ValidationError("\(what) must be HOST:PORT, got '\(value)'")
    }
    return (host, port)
}

/// Prints "farm: error: ..." on one line and exits non-zero.
func fail(_ message: String, code: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("farm: error: \(message)\n".utf8))
    exit(code)
}
