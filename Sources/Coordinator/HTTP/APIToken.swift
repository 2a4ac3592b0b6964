internal import Foundation

/// The HTTP API's bearer token when the operator gave none: made once and kept in the data directory.
public enum APIToken {
    /// Where the token lives in a data directory (readable by its owner only).
    public static func path(dataDirectory: String) -> String { dataDirectory + "/api-token" }

    /// The token kept in `dataDirectory`, made (32 random bytes, hexadecimal) and saved with mode 0600 if there is
    /// none yet.
    ///
    /// - Returns: The token, the file it is in, and whether it was made now.
    /// - Throws: `CoordinatorError` if the file cannot be read or written, or is empty.
    public static func loadOrCreate(dataDirectory: String) throws -> (token: String, path: String, created: Bool) {
        let path = path(dataDirectory: dataDirectory)
        if FileManager.default.fileExists(atPath: path) {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw CoordinatorError(.io, "cannot read \(path)")
            }
            let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty else { throw CoordinatorError(.io, "\(path) is empty; remove it to have a new token made") }
            return (token, path, false)
        }
        do {
            try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        } catch {
            throw CoordinatorError(.io, "cannot create \(dataDirectory): \(error)")
        }
        let token = EmbeddedFarm.randomToken()
        try writeFileAtomically(token + "\n", to: path, mode: 0o600)
        return (token, path, true)
    }
}
