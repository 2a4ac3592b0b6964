public import FarmProtocol
public import Foundation
import GRDB

// MARK: - Resume re-verification

extension JobStore {
    /// Re-checks a job's files before a resume trusts them, and sets back the segments whose files fail.
    ///
    /// A done segment is kept only if its result file is present with the recorded size and checksum and its
    /// recorded frame count equals the plan's (the frames themselves were counted when the result was accepted;
    /// an identical checksum means an identical file). Otherwise it goes back to ready if its source file is intact,
    /// or to pending if that is missing or changed too. A ready segment whose source file is missing or changed
    /// goes back to pending (the caller splits it again). Each reset records a ``EventKind/segmentReset`` event
    /// saying why. When no done segment remains, the pinned parameters are cleared.
    ///
    /// Call it after ``releaseAllLeases(at:)`` and before leasing: leased and pending segments are not checked,
    /// and a segment that changed between the check and the write is left as it is (and not reported).
    ///
    /// - Parameter digest: the size and ``SegmentChecksum`` of a file, or nil when it does not exist. It reads whole
    ///   files: run the reading off the cooperative pool (for example ``fileDigest(atPath:as:)`` on a thread of its
    ///   own). An error it throws counts as a failed check.
    public func verifySegments(
        _ jobID: String, at time: Date = .now, digest: @Sendable (String) async throws -> FileDigest?
    ) async throws -> ResumeVerification {
        guard let snapshot = try await snapshot(jobID) else {
            throw JobStoreError(.unknownJob, "no job \(jobID)")
        }
        var report = ResumeVerification()
        var changes: [Reset] = []
        for segment in snapshot.segments {
            switch segment.state {
            case .done:
                if let problem = try await Self.resultProblem(segment, digest) {
                    if let sourceProblem = try await Self.sourceProblem(segment, digest) {
                        changes.append(Reset(original: segment, target: .pending, reason: "\(problem); \(sourceProblem)"))
                    } else {
                        changes.append(Reset(original: segment, target: .ready, reason: problem))
                    }
                } else {
                    report.kept.append(segment.index)
                }
            case .ready:
                if let problem = try await Self.sourceProblem(segment, digest) {
                    changes.append(Reset(original: segment, target: .pending, reason: problem))
                }
            case .pending, .leased:
                break
            }
        }
        guard !changes.isEmpty else { return report }
        let checked = report
        let resets = changes
        return try await write("reset segments of job \(jobID)") { db in
            var report = checked
            for change in resets {
                guard var segment = try StoredSegment.fetchOne(db, key: ["jobID": jobID, "index": change.original.index]),
                    segment == change.original
                else { continue }
                let previous = segment.state
                segment.state = change.target
                segment.resultPath = nil
                segment.resultBytes = nil
                segment.resultChecksum = nil
                segment.frames = nil
                segment.encoder = nil
                segment.doneNode = nil
                if change.target == .pending {
                    segment.sourcePath = nil
                    segment.sourceBytes = nil
                    segment.sourceChecksum = nil
                    report.toPending.append(segment.index)
                } else {
                    report.toReady.append(segment.index)
                }
                report.reasons[segment.index] = change.reason
                try segment.update(db)
                try Self.insertEvent(
                    db, .segmentReset, "\(previous.rawValue) → \(change.target.rawValue): \(change.reason)",
                    jobID: jobID, segment: segment.index, at: time)
            }
            let done = try StoredSegment.filter(Column("jobID") == jobID)
                .filter(Column("state") == StoredSegment.State.done.rawValue).fetchCount(db)
            if done == 0, var job = try StoredJob.fetchOne(db, key: jobID), job.pinnedParameters != nil {
                job.pinnedParameters = nil
                try job.update(db)
            }
            report.toReady.sort()
            report.toPending.sort()
            return report
        }
    }

    /// The size and checksum of a file (a ``SegmentChecksum`` unless `kind` says otherwise), or nil when there is no
    /// file at `path`. Reads the whole file in 1 MiB pieces on the calling thread: call it from a thread of its own,
    /// not from the cooperative pool.
    public static func fileDigest<Checksum: StreamingChecksum>(
        atPath path: String, as kind: Checksum.Type = SegmentChecksum.self
    ) throws -> FileDigest? {
        do {
            return try Checksum.ofFile(atPath: path).map { FileDigest(bytes: $0.bytes, checksum: $0.checksum) }
        } catch {
            throw JobStoreError(.io, "\(path): cannot read", cause: error)
        }
    }

    private struct Reset: Sendable {
        var original: StoredSegment
        var target: StoredSegment.State
        var reason: String
    }

    private static func resultProblem(
        _ segment: StoredSegment, _ digest: @Sendable (String) async throws -> FileDigest?
    ) async throws -> String? {
        guard let path = segment.resultPath, let bytes = segment.resultBytes, let checksum = segment.resultChecksum
        else { return "no result recorded" }
        if let frames = segment.frames, frames != segment.plan.expectedFrames {
            return "result has \(frames) frames, the plan \(segment.plan.expectedFrames)"
        }
        return try await fileProblem("result", path, bytes, checksum, digest)
    }

    private static func sourceProblem(
        _ segment: StoredSegment, _ digest: @Sendable (String) async throws -> FileDigest?
    ) async throws -> String? {
        guard let path = segment.sourcePath, let bytes = segment.sourceBytes, let checksum = segment.sourceChecksum
        else { return "no source file recorded" }
        return try await fileProblem("source", path, bytes, checksum, digest)
    }

    private static func fileProblem(
        _ role: String, _ path: String, _ bytes: Int64, _ checksum: Data,
        _ digest: @Sendable (String) async throws -> FileDigest?
    ) async throws -> String? {
        // Checked before reading the file: its checksum could not be compared anyway.
        if checksum.count != SegmentChecksum.byteCount {
            return "\(role) \(path) was recorded with a \(checksum.count)-byte checksum by a version before protocol 4"
        }
        let found: FileDigest?
        do {
            found = try await digest(path)
        } catch let error as CancellationError {
            throw error
        } catch {
            return "\(role) \(path) cannot be read: \(error)"
        }
        guard let found else { return "\(role) \(path) is missing" }
        if found.bytes != bytes { return "\(role) \(path) has \(found.bytes) bytes, \(bytes) recorded" }
        if found.checksum != Array(checksum) { return "\(role) \(path) has another checksum than recorded" }
        return nil
    }
}
