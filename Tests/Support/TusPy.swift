import Foundation

/// tuspy, the stock Python tus client, driven through `scripts/tus-client.py` (installed, pinned, by
/// `scripts/install-test-tools.sh` on first use).
public enum TusPy {
    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// The python of the test tools' environment, installed once per test run.
    public static func python() async throws -> String {
        try await installed.value
    }

    private static let installed = Task<String, any Error> {
        let script = repositoryRoot.appendingPathComponent("scripts/install-test-tools.sh").path
        let result = try await FarmBinary.execute("/bin/bash", [script], timeout: 600)
        guard result.status == 0, let python = result.stdout.split(separator: "\n").last.map(String.init) else {
            throw TestFailure("scripts/install-test-tools.sh failed (\(result.status)): \(result.stderr.suffix(2000))")
        }
        return python
    }

    /// Runs `tus-client.py COMMAND ARGUMENTS...` and returns the JSON object it printed (also on failure, whose
    /// object has an `error`).
    public static func run(_ arguments: [String], token: String?) async throws -> [String: Any] {
        let script = repositoryRoot.appendingPathComponent("scripts/tus-client.py").path
        let result = try await FarmBinary.execute(
            try await python(), [script] + arguments, environment: token.map { ["FARM_API_TOKEN": $0] } ?? [:], timeout: 120)
        let line = result.stdout.split(separator: "\n").last.map(String.init) ?? ""
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw TestFailure("tus-client.py \(arguments.joined(separator: " ")) printed no result (\(result.status)): \(result.stdout) \(result.stderr.suffix(2000))")
        }
        return object
    }
}
