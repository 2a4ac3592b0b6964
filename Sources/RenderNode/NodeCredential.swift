import FarmProtocol
import Foundation

/// The credential this node was given at its enrolment, kept in its work directory (`credential`, readable by its
/// owner only) for the id it was given to. With it the node joins without the join token, so the farm's token can
/// be rotated without it; without it (a new work directory, a new id) the node enrols with the token.
enum NodeCredential {
    static func path(workDirectory: String) -> String { workDirectory + "/credential" }

    /// The credential kept for `nodeID`, or nil (none, another id's, or unreadable).
    static func load(workDirectory: String, nodeID: String) -> [UInt8]? {
        guard let text = try? String(contentsOfFile: path(workDirectory: workDirectory), encoding: .utf8) else { return nil }
        let fields = text.split(whereSeparator: \.isWhitespace)
        guard fields.count == 3, fields[0] == "farm-credential-v1", fields[1] == nodeID, fields[2].count == 64 else { return nil }
        return Hex.decode(fields[2])
    }

    /// Keeps `credential` for `nodeID` (written whole under a temporary name, mode 0600, then renamed).
    static func save(_ credential: [UInt8], workDirectory: String, nodeID: String) throws {
        let hex = Hex.encode(credential)
        let target = path(workDirectory: workDirectory)
        let temporary = target + ".tmp"
        guard FileManager.default.createFile(
            atPath: temporary, contents: Data("farm-credential-v1 \(nodeID) \(hex)\n".utf8),
            attributes: [.posixPermissions: 0o600])
        else {
            throw NodeError(code: .workDirectory, message: "cannot write \(temporary)")
        }
        guard rename(temporary, target) == 0 else {
            throw NodeError(code: .workDirectory, message: "cannot rename \(temporary) to \(target)")
        }
    }
}
