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

/// What a coordinator accepts as its join token or API token: both guard a port on the internet.
public enum SecretStrength {
    /// Characters a token has at least (the tokens farm makes have 64).
    public static let minimumLength = 32

    /// The placeholders the SDL files in `deploy/` carry, which a deployment must replace.
    public static let placeholders: Set<String> = [
        "replace-with-a-random-secret", "replace-with-another-random-secret", "replace-with-the-coordinators-join-token",
    ]

    /// Why `token` may not be used as `what` (a name such as "join token"), or nil when it may.
    public static func problem(_ token: String, what: String) -> String? {
        if placeholders.contains(token) {
            return "the \(what) is the placeholder from deploy/ (\(token)); replace it with a secret of your own, "
                + "such as the output of `openssl rand -hex 32`"
        }
        if token.count < minimumLength {
            return "the \(what) has \(token.count) characters; it needs at least \(minimumLength) "
                + "(make one with `openssl rand -hex 32`)"
        }
        return nil
    }
}
