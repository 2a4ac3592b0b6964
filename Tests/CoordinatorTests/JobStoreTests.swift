@testable import FarmCoordinator
import FarmProtocol
import Foundation
import GRDB
import Logging
import Testing

/// The job store: schema and migrations, the lease invariant, restart and resume on a real file.
@Suite struct JobStoreTests {
    /// Where a store lives for a test: in memory, or a file in a fresh temporary data directory.
    enum Kind: String, CaseIterable, CustomTestStringConvertible {
        case memory, file
        var testDescription: String { rawValue }
    }

    /// A request as the coordinator might encode it.
    struct Request: Codable, Equatable {
        var codec = "h264"
        var crf: Int? = 23
        var preset = "medium"
        var segmentSeconds: Double? = 2.5
        var keepWork = false
        var container = "mp4"
    }

    static let t0 = Date(timeIntervalSince1970: 1_700_000_000)

    /// A fresh temporary directory, removed by `cleanup`.
    static func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("farm-store-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func cleanup(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    static func store(_ kind: Kind, directory: String) async throws -> JobStore {
        switch kind {
        case .memory: try await JobStore.inMemory()
        case .file: try await JobStore(dataDirectory: directory)
        }
    }

    static func plans(_ count: Int, framesEach: Int = 10) -> [SegmentPlan] {
        (0..<count).map { k in
            SegmentPlan(
                index: k, startKeyframe: k, endKeyframe: k + 1, startPTS: k == 0 ? nil : Int64(k * 1000),
                endPTS: k == count - 1 ? nil : Int64((k + 1) * 1000), packets: (k * 10)..<((k + 1) * 10),
                expectedFrames: framesEach, durationTicks: 1000)
        }
    }

    static func checksum(_ seed: Int) -> [UInt8] { (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ seed) } }

    /// A running job with `segments` ready segments (fake source files) and a connected node `n1` with `slots`.
    @discardableResult
    static func runningJob(
        _ store: JobStore, id: String = "job-1", segments: Int = 3, slots: Int = 4, ready: Bool = true
    ) async throws -> StoredJob {
        try await store.insertJob(
            id: id, source: "/in/\(id).mp4", output: "/out/\(id).mp4", request: JobStore.encodeJSON(Request()),
            workDirectory: "/data/jobs/\(id)", at: t0)
        try await store.updateJob(id, state: .running, phase: "indexing", at: t0)
        try await store.setPlan(
            id, settings: #"{"encoder":"libx264"}"#, totalFrames: segments * 10, sourceSeconds: Double(segments),
            plans: plans(segments), at: t0)
        if ready {
            for k in 0..<segments {
                try await store.markReady(id, index: k, path: "/data/jobs/\(id)/src-\(k).pkt", bytes: 100, checksum: checksum(k))
            }
        }
        if try await store.node("n1") == nil {
            try await store.upsertNode(id: "n1", address: "10.0.0.1:5000", slots: slots, threads: 2, capabilities: "{}", at: t0)
        }
        return try #require(await store.job(id))
    }

    /// Expects `body` to throw a `JobStoreError` with `code`.
    static func expectError(
        _ code: JobStoreError.Code, sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () async throws -> Void
    ) async {
        let error = await #expect(throws: JobStoreError.self, sourceLocation: sourceLocation) { try await body() }
        #expect(error?.code == code, "\(String(describing: error))", sourceLocation: sourceLocation)
    }

    // MARK: - Schema

    @Test func migrationsRunTwiceWithoutHarm() async throws {
        let queue = try DatabaseQueue()
        let first = try await JobStore(writer: queue)
        try await first.insertJob(id: "j", source: "s", output: "o", request: "{}", workDirectory: "w", at: Self.t0)
        let second = try await JobStore(writer: queue)
        #expect(try await second.job("j")?.source == "s")
        let applied = try await queue.read { db in try JobStore.migrator.appliedIdentifiers(db) }
        #expect(applied == ["v1", "v2-health", "v3-runs", "v4-bans", "v5-credentials"])
        let tables = try await queue.read { db in
            try ["jobs", "segments", "nodes", "events"].map { try db.tableExists($0) }
        }
        #expect(tables == [true, true, true, true])

        let directory = try Self.temporaryDirectory()
        defer { Self.cleanup(directory) }
        try await JobStore(dataDirectory: directory).insertJob(
            id: "k", source: "s", output: "o", request: "{}", workDirectory: "w", at: Self.t0)
        let reopened = try await JobStore(dataDirectory: directory)
        #expect(try await reopened.job("k") != nil)
    }

    @Test func fileDatabaseIsInWALMode() async throws {
        let directory = try Self.temporaryDirectory()
        defer { Self.cleanup(directory) }
        let store = try await JobStore(dataDirectory: directory)
        #expect(FileManager.default.fileExists(atPath: "\(directory)/farm.sqlite"))
        let mode = try await store.writer.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
        #expect(mode == "wal")
        // WAL mode is a property of the file: a new connection sees it too.
        let other = try DatabaseQueue(path: JobStore.databasePath(dataDirectory: directory))
        #expect(try await other.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") } == "wal")
        let foreignKeys = try await store.writer.read { db in try Bool.fetchOne(db, sql: "PRAGMA foreign_keys") }
        #expect(foreignKeys == true)
    }

    @Test func schemaRejectsALeaseWithoutItsHolder() async throws {
        let store = try await JobStore.inMemory()
        try await Self.runningJob(store)
        // Bypassing the store's methods: the CHECK constraints still refuse an inconsistent lease.
        await #expect(throws: DatabaseError.self) {
            try await store.writer.write { db in
                try db.execute(sql: "UPDATE segments SET state = 'leased' WHERE jobID = 'job-1' AND \"index\" = 0")
            }
        }
        await #expect(throws: DatabaseError.self) {
            try await store.writer.write { db in
                try db.execute(
                    sql: """
                        UPDATE segments SET state = 'leased', leasedTask = 7, leasedNode = 'n1',
                        leaseExpiresAt = '2030-01-01 00:00:00.000' WHERE jobID = 'job-1'
                        """)
            }
        }
    }

    // MARK: - Jobs

    @Test func jobRoundTrips() async throws {
        let store = try await JobStore.inMemory()
        let request = Request(crf: nil, segmentSeconds: nil, keepWork: true, container: "mkv")
        let inserted = try await store.insertJob(
            id: "job-7", source: "/in/a.mov", output: "/out/a.mkv", request: JobStore.encodeJSON(request),
            workDirectory: "/data/jobs/job-7", at: Self.t0)
        #expect(inserted.state == .queued)
        #expect(try await store.job("job-7") == inserted)

        try await store.updateJob("job-7", state: .running, phase: "indexing", at: Self.t0.addingTimeInterval(1))
        let outcome = try await store.setPlan(
            "job-7", settings: #"{"crf":23}"#, totalFrames: 30, sourceSeconds: 1.25, plans: Self.plans(3))
        #expect(outcome == .inserted)
        let pinned = try await store.pinParameters("job-7", [1, 2, 3])
        #expect(pinned == Data([1, 2, 3]))
        #expect(try await store.pinParameters("job-7", [9]) == Data([1, 2, 3]))
        try await store.updateJob("job-7", phase: "encoding")

        let job = try #require(await store.job("job-7"))
        #expect(job.id == "job-7")
        #expect(job.source == "/in/a.mov")
        #expect(job.output == "/out/a.mkv")
        #expect(try JobStore.decodeJSON(Request.self, from: job.request) == request)
        #expect(job.state == .running)
        #expect(job.phase == "encoding")
        #expect(job.error == nil)
        #expect(job.totalFrames == 30)
        #expect(job.sourceSeconds == 1.25)
        #expect(job.createdAt == Self.t0)
        #expect(job.startedAt == Self.t0.addingTimeInterval(1))
        #expect(job.finishedAt == nil)
        #expect(job.settings == #"{"crf":23}"#)
        #expect(job.pinnedParameters == Data([1, 2, 3]))
        #expect(job.workDirectory == "/data/jobs/job-7")
        let segments = try await store.segments("job-7")
        #expect(segments.map(\.plan) == Self.plans(3))
        #expect(segments.allSatisfy { $0.state == .pending && $0.attempts == 0 && $0.failures.isEmpty })

        try await store.updateJob("job-7", state: .failed, error: "disk full", at: Self.t0.addingTimeInterval(5))
        let failed = try #require(await store.job("job-7"))
        #expect(failed.state == .failed)
        #expect(failed.error == "disk full")
        #expect(failed.finishedAt == Self.t0.addingTimeInterval(5))
        #expect(try await store.jobs(states: [.failed]).map(\.id) == ["job-7"])
        #expect(try await store.unfinishedJobs().isEmpty)

        await Self.expectError(.duplicateJob) {
            try await store.insertJob(id: "job-7", source: "s", output: "o", request: "{}", workDirectory: "w")
        }
        await Self.expectError(.unknownJob) { try await store.updateJob("nope", phase: "x") }
    }

    @Test func jobStateTransitionsAreChecked() async throws {
        let store = try await JobStore.inMemory()
        try await store.insertJob(id: "q", source: "s", output: "o", request: "{}", workDirectory: "w")
        await Self.expectError(.invalidTransition) { try await store.updateJob("q", state: .done) }
        try await Self.runningJob(store, id: "r")
        try await store.lease("r", index: 0, taskID: 1, nodeID: "n1", expiresAt: Self.t0.addingTimeInterval(30))
        try await store.updateJob("r", state: .done, phase: "finished")
        // Finishing voids the job's leases; the finished job does not change again.
        #expect(try await store.segment("r", index: 0)?.state == .ready)
        #expect(try await store.segment("r", index: 0)?.leasedTask == nil)
        await Self.expectError(.jobFinished) { try await store.updateJob("r", state: .failed, error: "late") }
        await Self.expectError(.jobFinished) { try await store.updateJob("r", phase: "encoding") }
        await Self.expectError(.jobNotRunning) {
            try await store.lease("r", index: 1, taskID: 2, nodeID: "n1", expiresAt: .distantFuture)
        }
        await Self.expectError(.jobNotRunning) {
            try await store.markReady("q", index: 0, path: "p", bytes: 1, checksum: [])
        }
        #expect(try await store.jobs().map(\.id).sorted() == ["q", "r"])
        #expect(try await store.jobs(limit: 1).count == 1)
    }

    @Test func planInsertIsIdempotent() async throws {
        let store = try await JobStore.inMemory()
        try await Self.runningJob(store, segments: 3)
        try await store.lease("job-1", index: 0, taskID: 1, nodeID: "n1", expiresAt: .distantFuture)
        _ = try await store.complete(
            "job-1", index: 0, taskID: 1, nodeID: "n1", resultPath: "/r0", bytes: 5, checksum: Self.checksum(9),
            frames: 10, encoder: "libx264", parameters: [1])

        // A resume plans again with the same plans and settings: nothing is lost.
        let again = try await store.setPlan(
            "job-1", settings: #"{"encoder":"libx264"}"#, totalFrames: 30, sourceSeconds: 3, plans: Self.plans(3))
        #expect(again == .unchanged)
        let kept = try await store.segments("job-1")
        #expect(kept.map(\.state) == [.done, .ready, .ready])
        #expect(kept[0].resultPath == "/r0")
        #expect(try await store.setPlan("job-1", settings: nil, totalFrames: 30, sourceSeconds: 3, plans: Self.plans(3))
            == .unchanged)

        await Self.expectError(.planMismatch) {
            try await store.setPlan("job-1", settings: nil, totalFrames: 40, sourceSeconds: 4, plans: Self.plans(4))
        }
        await Self.expectError(.planMismatch) {
            try await store.setPlan(
                "job-1", settings: #"{"encoder":"libx265"}"#, totalFrames: 30, sourceSeconds: 3, plans: Self.plans(3))
        }
        #expect(try await store.segments("job-1").map(\.state) == [.done, .ready, .ready])
        await Self.expectError(.invalidPlan) {
            try await store.setPlan(
                "job-1", settings: nil, totalFrames: 30, sourceSeconds: 3, plans: Array(Self.plans(3).reversed()))
        }

        let replaced = try await store.setPlan(
            "job-1", settings: #"{"encoder":"libx265"}"#, totalFrames: 40, sourceSeconds: 4, plans: Self.plans(4),
            ifDifferent: .replace)
        #expect(replaced == .replaced)
        let fresh = try await store.segments("job-1")
        #expect(fresh.map(\.state) == [.pending, .pending, .pending, .pending])
        let job = try #require(await store.job("job-1"))
        #expect(job.pinnedParameters == nil)
        #expect(job.settings == #"{"encoder":"libx265"}"#)
        #expect(job.totalFrames == 40)
        #expect(try await store.events(jobID: "job-1").last?.kind == .planReplaced)
    }

    // MARK: - Leases

    @Test func aSegmentIsLeasedByOneTaskAtATime() async throws {
        let store = try await JobStore.inMemory()
        try await Self.runningJob(store, segments: 3, slots: 2, ready: false)
        try await store.markReady("job-1", index: 0, path: "/s0", bytes: 100, checksum: Self.checksum(0))
        try await store.markReady("job-1", index: 1, path: "/s1", bytes: 100, checksum: Self.checksum(1))
        let deadline = Self.t0.addingTimeInterval(30)

        let leased = try await store.lease("job-1", index: 0, taskID: 1, nodeID: "n1", expiresAt: deadline, at: Self.t0)
        #expect(leased.state == .leased)
        #expect(leased.leasedTask == 1)
        #expect(leased.leasedNode == "n1")
        #expect(leased.leaseExpiresAt == deadline)
        #expect(leased.attempts == 1)

        // The second lease of the same segment fails, whoever asks.
        await Self.expectError(.segmentNotLeasable) {
            try await store.lease("job-1", index: 0, taskID: 2, nodeID: "n1", expiresAt: deadline)
        }
        try await store.upsertNode(id: "n2", address: "10.0.0.2:5000", slots: 1, threads: 1, capabilities: "{}")
        await Self.expectError(.segmentNotLeasable) {
            try await store.lease("job-1", index: 0, taskID: 3, nodeID: "n2", expiresAt: deadline)
        }
        // Pending (no source yet) is not leasable either.
        await Self.expectError(.segmentNotLeasable) {
            try await store.lease("job-1", index: 2, taskID: 4, nodeID: "n1", expiresAt: deadline)
        }
        // A task holds one segment.
        await Self.expectError(.taskInUse) {
            try await store.lease("job-1", index: 1, taskID: 1, nodeID: "n1", expiresAt: deadline)
        }
        #expect(try await store.segment("job-1", index: 0)?.leasedTask == 1)

        // Done is not leasable.
        let outcome = try await store.complete(
            "job-1", index: 0, taskID: 1, nodeID: "n1", resultPath: "/r0", bytes: 7, checksum: Self.checksum(5),
            frames: 10, encoder: "libx264")
        guard case .completed(_, let remaining) = outcome else {
            Issue.record("expected completion, got \(outcome)")
            return
        }
        #expect(remaining == 2)
        await Self.expectError(.segmentNotLeasable) {
            try await store.lease("job-1", index: 0, taskID: 5, nodeID: "n1", expiresAt: deadline)
        }
        #expect(try await store.markReady("job-1", index: 0, path: "/s0", bytes: 100, checksum: Self.checksum(0)) == false)
        #expect(try await store.segment("job-1", index: 0)?.state == .done)

        await Self.expectError(.unknownSegment) {
            try await store.lease("job-1", index: 9, taskID: 6, nodeID: "n1", expiresAt: deadline)
        }
        await Self.expectError(.unknownJob) {
            try await store.lease("job-9", index: 0, taskID: 6, nodeID: "n1", expiresAt: deadline)
        }
        await Self.expectError(.unknownNode) {
            try await store.lease("job-1", index: 1, taskID: 6, nodeID: "n9", expiresAt: deadline)
        }
    }

    @Test func nodesLeaseOnlyWhatTheirSlotsAndStateAllow() async throws {
        let store = try await JobStore.inMemory()
        try await Self.runningJob(store, segments: 4, slots: 2)
        let deadline = Date.distantFuture
        try await store.lease("job-1", index: 0, taskID: 1, nodeID: "n1", expiresAt: deadline)
        try await store.lease("job-1", index: 1, taskID: 2, nodeID: "n1", expiresAt: deadline)
        await Self.expectError(.nodeUnavailable) {
            try await store.lease("job-1", index: 2, taskID: 3, nodeID: "n1", expiresAt: deadline)
        }

        try await store.upsertNode(id: "n2", address: "a", slots: 2, threads: 1, capabilities: "{}", at: Self.t0)
        try await store.quarantineNode("n2", until: Self.t0.addingTimeInterval(60), reason: "bad results", at: Self.t0)
        await Self.expectError(.nodeUnavailable) {
            try await store.lease("job-1", index: 2, taskID: 3, nodeID: "n2", expiresAt: deadline, at: Self.t0)
        }
        try await store.lease(
            "job-1", index: 2, taskID: 3, nodeID: "n2", expiresAt: deadline, at: Self.t0.addingTimeInterval(61))

        try await store.markNode("n2", .draining)
        await Self.expectError(.nodeUnavailable) {
            try await store.lease("job-1", index: 3, taskID: 4, nodeID: "n2", expiresAt: deadline)
        }
        // Draining keeps its leases; gone gives them back.
        #expect(try await store.segment("job-1", index: 2)?.leasedNode == "n2")
        let released = try await store.markNode("n2", .gone, reason: "connection closed")
        #expect(released == [ReleasedLease(jobID: "job-1", index: 2, taskID: 3, nodeID: "n2")])
        #expect(try await store.segment("job-1", index: 2)?.state == .ready)
        #expect(try await store.node("n2")?.state == .gone)
        // A node that comes back is connected again, with its history.
        let back = try await store.upsertNode(id: "n2", address: "b", slots: 3, threads: 1, capabilities: "{}")
        #expect(back.state == .connected)
        #expect(back.address == "b")
        #expect(back.firstSeen == Self.t0)
        #expect(try await store.nodes().map(\.id) == ["n1", "n2"])
        #expect(try await store.nodes(states: [.gone]).isEmpty)

        #expect(try await store.releaseLeases(nodeID: "n1").map(\.taskID) == [1, 2])
    }

    @Test func onlyTheHolderReleases() async throws {
        let store = try await JobStore.inMemory()
        try await Self.runningJob(store)
        try await store.lease("job-1", index: 1, taskID: 10, nodeID: "n1", expiresAt: .distantFuture)

        #expect(try await store.release("job-1", index: 1, taskID: 11, failure: "not mine") == nil)
        #expect(try await store.segment("job-1", index: 1)?.leasedTask == 10)

        let released = try #require(await store.release("job-1", index: 1, taskID: 10, failure: "encoder crashed"))
        #expect(released.state == .ready)
        #expect(released.leasedTask == nil)
        #expect(released.leasedNode == nil)
        #expect(released.leaseExpiresAt == nil)
        #expect(released.failures == ["n1: encoder crashed"])
        #expect(released.attempts == 1)
        #expect(try await store.node("n1")?.failures == 1)
        // Twice is once.
        #expect(try await store.release("job-1", index: 1, taskID: 10, failure: "again") == nil)
        #expect(try await store.segment("job-1", index: 1)?.failures.count == 1)

        try await store.lease("job-1", index: 1, taskID: 12, nodeID: "n1", expiresAt: .distantFuture)
        let quiet = try #require(await store.release("job-1", index: 1, taskID: 12))
        #expect(quiet.failures.count == 1)
        #expect(quiet.attempts == 2)
        let kinds = try await store.events(jobID: "job-1").map(\.kind).suffix(4)
        #expect(Array(kinds) == [.segmentLeased, .segmentFailed, .segmentLeased, .segmentReleased])
    }

    @Test func onlyTheHolderCompletes() async throws {
        let store = try await JobStore.inMemory()
        try await Self.runningJob(store, segments: 2)
        try await store.upsertNode(id: "n2", address: "a", slots: 1, threads: 1, capabilities: "{}")
        try await store.lease("job-1", index: 0, taskID: 1, nodeID: "n1", expiresAt: .distantFuture)

        func complete(_ task: UInt64, node: String, parameters: [UInt8]? = [7, 7]) async throws -> CompletionOutcome {
            try await store.complete(
                "job-1", index: 0, taskID: task, nodeID: node, resultPath: "/r0-\(task)", bytes: 42,
                checksum: Self.checksum(3), frames: 10, encoder: "libx264", parameters: parameters)
        }
        #expect(try await complete(2, node: "n1") == .notHolder)
        #expect(try await complete(1, node: "n2") == .notHolder)
        #expect(try await store.segment("job-1", index: 0)?.state == .leased)

        // A released lease's late result is not wanted.
        try await store.release("job-1", index: 0, taskID: 1)
        #expect(try await complete(1, node: "n1") == .notHolder)

        try await store.lease("job-1", index: 0, taskID: 3, nodeID: "n2", expiresAt: .distantFuture)
        let outcome = try await complete(3, node: "n2")
        guard case .completed(let segment, let remaining) = outcome else {
            Issue.record("expected completion, got \(outcome)")
            return
        }
        #expect(remaining == 1)
        #expect(segment.state == .done)
        #expect(segment.resultPath == "/r0-3")
        #expect(segment.resultBytes == 42)
        #expect(segment.resultChecksum == Data(Self.checksum(3)))
        #expect(segment.frames == 10)
        #expect(segment.encoder == "libx264")
        #expect(segment.doneNode == "n2")
        #expect(segment.leasedTask == nil)
        #expect(try await store.node("n2")?.segmentsDone == 1)
        #expect(try await store.job("job-1")?.pinnedParameters == Data([7, 7]))
        #expect(try await complete(3, node: "n2") == .notHolder)

        // Other parameter sets than the pinned ones are refused; the lease stays with its holder.
        try await store.lease("job-1", index: 1, taskID: 4, nodeID: "n1", expiresAt: .distantFuture)
        let mismatch = try await store.complete(
            "job-1", index: 1, taskID: 4, nodeID: "n1", resultPath: "/r1", bytes: 1, checksum: Self.checksum(1),
            frames: 10, encoder: "h264_vaapi", parameters: [8])
        #expect(mismatch == .parameterMismatch(pinned: Data([7, 7])))
        #expect(try await store.segment("job-1", index: 1)?.leasedTask == 4)
        let last = try await store.complete(
            "job-1", index: 1, taskID: 4, nodeID: "n1", resultPath: "/r1", bytes: 1, checksum: Self.checksum(1),
            frames: 10, encoder: "libx264", parameters: [7, 7])
        guard case .completed(_, remaining: 0) = last else {
            Issue.record("expected the last completion, got \(last)")
            return
        }
    }

    @Test func expiredLeasesAreReleased() async throws {
        let store = try await JobStore.inMemory()
        try await Self.runningJob(store, segments: 3)
        try await store.lease("job-1", index: 0, taskID: 1, nodeID: "n1", expiresAt: Self.t0.addingTimeInterval(10))
        try await store.lease("job-1", index: 1, taskID: 2, nodeID: "n1", expiresAt: Self.t0.addingTimeInterval(30))
        try await store.upsertNode(id: "n2", address: "a", slots: 1, threads: 1, capabilities: "{}")
        try await store.lease("job-1", index: 2, taskID: 3, nodeID: "n2", expiresAt: Self.t0.addingTimeInterval(10))

        #expect(try await store.releaseExpiredLeases(now: Self.t0.addingTimeInterval(5)).isEmpty)
        // n2's heartbeat moves its deadline; n1's task 1 runs out.
        #expect(try await store.nodeHeartbeat("n2", leasesUntil: Self.t0.addingTimeInterval(40)) == 1)
        let expired = try await store.releaseExpiredLeases(now: Self.t0.addingTimeInterval(10))
        #expect(expired == [ReleasedLease(jobID: "job-1", index: 0, taskID: 1, nodeID: "n1")])
        #expect(try await store.segments("job-1").map(\.state) == [.ready, .leased, .leased])
        #expect(try await store.renewLease("job-1", index: 1, taskID: 2, until: Self.t0.addingTimeInterval(60)))
        #expect(try await store.renewLease("job-1", index: 0, taskID: 1, until: Self.t0.addingTimeInterval(60)) == false)
        let later = try await store.releaseExpiredLeases(now: Self.t0.addingTimeInterval(45))
        #expect(later.map(\.taskID) == [3])
        #expect(try await store.events(jobID: "job-1").filter { $0.kind == .leaseExpired }.count == 2)
        // An expired task's late result is not accepted.
        let late = try await store.complete(
            "job-1", index: 0, taskID: 1, nodeID: "n1", resultPath: "/r", bytes: 1, checksum: [], frames: 10,
            encoder: "x")
        #expect(late == .notHolder)
    }

    @Test(arguments: Kind.allCases)
    func concurrentLeasesNeverDoubleLease(kind: Kind) async throws {
        let directory = try Self.temporaryDirectory()
        defer { Self.cleanup(directory) }
        let store = try await Self.store(kind, directory: directory)
        try await Self.runningJob(store, segments: 10, slots: 100)

        let winners = try await withThrowingTaskGroup(of: (UInt64, Int)?.self) { group in
            for attempt in 0..<50 {
                group.addTask {
                    let index = attempt % 10
                    let task = UInt64(attempt + 1)
                    do {
                        try await store.lease("job-1", index: index, taskID: task, nodeID: "n1", expiresAt: .distantFuture)
                        return (task, index)
                    } catch let error as JobStoreError where error.code == .segmentNotLeasable {
                        return nil
                    }
                }
            }
            var winners: [(UInt64, Int)] = []
            for try await winner in group { if let winner { winners.append(winner) } }
            return winners
        }
        #expect(winners.count == 10)
        #expect(Set(winners.map(\.1)) == Set(0..<10))
        let segments = try await store.segments("job-1")
        #expect(segments.allSatisfy { $0.state == .leased && $0.attempts == 1 })
        let holders = Dictionary(winners.map { ($0.1, $0.0) }, uniquingKeysWith: { first, _ in first })
        #expect(segments.allSatisfy { holders[$0.index] == $0.leasedTask })
    }

    // MARK: - Restart

    @Test func releaseAllLeasesAfterReopen() async throws {
        let directory = try Self.temporaryDirectory()
        defer { Self.cleanup(directory) }
        do {
            let store = try await JobStore(dataDirectory: directory)
            try await Self.runningJob(store, segments: 3)
            try await store.lease("job-1", index: 0, taskID: 1, nodeID: "n1", expiresAt: .distantFuture)
            try await store.lease("job-1", index: 2, taskID: 2, nodeID: "n1", expiresAt: .distantFuture)
        }
        // The coordinator died holding two leases; the new one voids them.
        let store = try await JobStore(dataDirectory: directory)
        #expect(try await store.segments("job-1").map(\.state) == [.leased, .ready, .leased])
        let voided = try await store.releaseAllLeases()
        #expect(voided.map(\.index) == [0, 2])
        #expect(voided.map(\.taskID) == [1, 2])
        #expect(try await store.segments("job-1").map(\.state) == [.ready, .ready, .ready])
        #expect(try await store.releaseAllLeases().isEmpty)
        #expect(try await store.events(jobID: "job-1").filter { $0.kind == .leaseVoided }.count == 2)
        // New task numbers may start again at 1.
        try await store.lease("job-1", index: 1, taskID: 1, nodeID: "n1", expiresAt: .distantFuture)
    }

    @Test func unfinishedJobsSurviveAReopen() async throws {
        let directory = try Self.temporaryDirectory()
        defer { Self.cleanup(directory) }
        do {
            let store = try await JobStore(dataDirectory: directory)
            try await Self.runningJob(store, id: "job-a", segments: 3)
            for k in 0..<2 {
                try await store.lease("job-a", index: k, taskID: UInt64(k + 1), nodeID: "n1", expiresAt: .distantFuture)
                _ = try await store.complete(
                    "job-a", index: k, taskID: UInt64(k + 1), nodeID: "n1", resultPath: "/data/jobs/job-a/enc-\(k).pkt",
                    bytes: Int64(100 + k), checksum: Self.checksum(10 + k), frames: 10, encoder: "libx264",
                    parameters: [4, 2])
            }
            try await store.lease("job-a", index: 2, taskID: 3, nodeID: "n1", expiresAt: .distantFuture)
            try await store.insertJob(
                id: "job-b", source: "s", output: "o", request: "{}", workDirectory: "w", at: Self.t0.addingTimeInterval(1))
            try await store.insertJob(
                id: "job-c", source: "s", output: "o", request: "{}", workDirectory: "w", at: Self.t0.addingTimeInterval(2))
            try await store.updateJob("job-c", state: .cancelled, error: "user")
        }
        let store = try await JobStore(dataDirectory: directory)
        let unfinished = try await store.unfinishedJobs()
        #expect(unfinished.map(\.job.id) == ["job-a", "job-b"])
        let a = try #require(unfinished.first)
        #expect(a.job.state == .running)
        #expect(a.job.pinnedParameters == Data([4, 2]))
        #expect(a.job.settings == #"{"encoder":"libx264"}"#)
        #expect(a.segments.map(\.state) == [.done, .done, .leased])
        #expect(a.segments[1].resultPath == "/data/jobs/job-a/enc-1.pkt")
        #expect(a.segments[1].resultBytes == 101)
        #expect(a.segments[1].resultChecksum == Data(Self.checksum(11)))
        #expect(a.segments[1].frames == 10)
        #expect(a.segments[1].doneNode == "n1")
        #expect(a.segments[2].sourceChecksum == Data(Self.checksum(2)))
        #expect(unfinished[1].segments.isEmpty)
        #expect(try await store.snapshot("job-a") == a)
    }

    @Test func resumeReverifiesFiles() async throws {
        let directory = try Self.temporaryDirectory()
        defer { Self.cleanup(directory) }
        let work = "\(directory)/jobs/job-1"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        func write(_ name: String, _ text: String) throws -> (String, FileDigest) {
            let path = "\(work)/\(name)"
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            return (path, try #require(try JobStore.fileDigest(atPath: path)))
        }

        let store = try await JobStore(dataDirectory: directory)
        try await Self.runningJob(store, segments: 8, slots: 10, ready: false)
        var results: [String] = []
        for k in 0..<8 {
            let (source, sourceDigest) = try write("src-\(k).pkt", "source packets of segment \(k)")
            try await store.markReady(
                "job-1", index: k, path: source, bytes: sourceDigest.bytes, checksum: sourceDigest.checksum)
            guard k < 4 || k >= 6 else { continue }
            let (result, resultDigest) = try write("enc-\(k).pkt", "encoded packets of segment \(k)")
            results.append(result)
            try await store.lease("job-1", index: k, taskID: UInt64(k + 1), nodeID: "n1", expiresAt: .distantFuture)
            _ = try await store.complete(
                "job-1", index: k, taskID: UInt64(k + 1), nodeID: "n1", resultPath: result, bytes: resultDigest.bytes,
                checksum: k == 7 ? try #require(try JobStore.fileDigest(atPath: result, as: SHA256Stream.self)).checksum
                    : resultDigest.checksum, frames: k == 6 ? 9 : 10, encoder: "libx264", parameters: [1])
        }
        #expect(try JobStore.fileDigest(atPath: "\(work)/none") == nil)

        // 0 intact; 1 result deleted; 2 result altered, same size; 3 result truncated and its source deleted;
        // 4 ready with its source intact; 5 ready with its source deleted; 6 intact but recorded with 9 frames of 10;
        // 7 intact but recorded by an earlier version, with a SHA-256.
        try FileManager.default.removeItem(atPath: results[1])
        try Data("encoded packets of segment X".utf8).write(to: URL(fileURLWithPath: results[2]))
        try Data("enc".utf8).write(to: URL(fileURLWithPath: results[3]))
        try FileManager.default.removeItem(atPath: "\(work)/src-3.pkt")
        try FileManager.default.removeItem(atPath: "\(work)/src-5.pkt")

        let report = try await store.verifySegments("job-1") { path in try JobStore.fileDigest(atPath: path) }
        #expect(report.kept == [0])
        #expect(report.toReady == [1, 2, 6, 7])
        #expect(report.toPending == [3, 5])
        #expect(report.reasons[1]?.contains("missing") == true)
        #expect(report.reasons[2]?.contains("another checksum") == true)
        #expect(report.reasons[3]?.contains("bytes") == true)
        #expect(report.reasons[5]?.contains("missing") == true)
        #expect(report.reasons[6]?.contains("frames") == true)
        #expect(report.reasons[7]?.contains("32-byte checksum by a version before protocol 4") == true, "\(report.reasons)")
        #expect(report.reasons[0] == nil && report.reasons[4] == nil)

        let segments = try await store.segments("job-1")
        #expect(segments.map(\.state) == [.done, .ready, .ready, .pending, .ready, .pending, .ready, .ready])
        #expect(segments[0].resultPath == results[0])
        #expect(segments[1].resultPath == nil && segments[1].frames == nil && segments[1].doneNode == nil)
        #expect(segments[1].sourcePath == "\(work)/src-1.pkt")
        #expect(segments[3].sourcePath == nil && segments[3].sourceChecksum == nil)
        let resets = try await store.events(jobID: "job-1").filter { $0.kind == .segmentReset }
        #expect(resets.map(\.segment) == [1, 2, 3, 5, 6, 7])
        #expect(resets.first?.message.hasPrefix("done → ready") == true)
        // One done segment remains, so the pinned parameters stay.
        #expect(try await store.job("job-1")?.pinnedParameters == Data([1]))

        // The reset segments can be leased (or split) again; a second check keeps what the first kept.
        try await store.lease("job-1", index: 1, taskID: 20, nodeID: "n1", expiresAt: .distantFuture)
        try await store.release("job-1", index: 1, taskID: 20)
        let again = try await store.verifySegments("job-1") { path in try JobStore.fileDigest(atPath: path) }
        #expect(again.kept == [0])
        #expect(again.toReady.isEmpty && again.toPending.isEmpty)

        // A digest that fails counts as a failed check; with no done segment left the pinned parameters go.
        let last = try await store.verifySegments("job-1") { _ in throw CocoaError(.fileReadUnknown) }
        #expect(last.toPending == [0, 1, 2, 4, 6, 7])
        #expect(try await store.job("job-1")?.pinnedParameters == nil)
    }

    // MARK: - Events and retention

    @Test func eventsAreRecordedInOrder() async throws {
        let store = try await JobStore.inMemory()
        try await store.insertJob(id: "j", source: "s", output: "o", request: "{}", workDirectory: "w", at: Self.t0)
        for k in 0..<5 {
            try await store.recordEvent(.note, "note \(k)", jobID: "j", segment: k, at: Self.t0.addingTimeInterval(1))
        }
        try await store.recordEvent(.note, "farm-wide", nodeID: "n1", at: Self.t0)
        let events = try await store.events(jobID: "j")
        #expect(events.map(\.message) == ["s → o", "note 0", "note 1", "note 2", "note 3", "note 4"])
        #expect(events.map(\.kind) == [.jobQueued] + Array(repeating: .note, count: 5))
        #expect(zip(events, events.dropFirst()).allSatisfy { $0.id! < $1.id! })
        #expect(try await store.events(jobID: "j", limit: 2).map(\.message) == ["note 3", "note 4"])
        #expect(try await store.events(limit: 1).map(\.message) == ["farm-wide"])
        #expect(try await store.events().count == 7)
        await Self.expectError(.unknownJob) { try await store.recordEvent(.note, "x", jobID: "nope") }

        #expect(try await store.pruneEvents(before: Self.t0.addingTimeInterval(1)) == 1)
        #expect(try await store.events().count == 6)
    }

    @Test func deletingAJobTakesItsSegmentsAndEvents() async throws {
        let store = try await JobStore.inMemory()
        try await Self.runningJob(store, id: "old", segments: 2)
        await Self.expectError(.jobNotFinished) { try await store.deleteJob("old") }
        try await store.updateJob("old", state: .done, phase: "finished", at: Self.t0.addingTimeInterval(10))
        try await Self.runningJob(store, id: "new", segments: 1)
        try await store.updateJob("new", state: .cancelled, at: Self.t0.addingTimeInterval(100))

        let deleted = try await store.deleteJobs(finishedBefore: Self.t0.addingTimeInterval(50))
        #expect(deleted.map(\.id) == ["old"])
        #expect(deleted.first?.workDirectory == "/data/jobs/old")
        #expect(try await store.job("old") == nil)
        #expect(try await store.segments("old").isEmpty)
        #expect(try await store.events(jobID: "old").isEmpty)
        let removed = try await store.deleteJob("new")
        #expect(removed.id == "new")
        #expect(try await store.jobs().isEmpty)
        await Self.expectError(.unknownJob) { try await store.deleteJob("new") }
        // Nodes outlive jobs.
        #expect(try await store.node("n1") != nil)
    }

    @Test func aRestartedCoordinatorReportsEndedJobsUntilCleanupForgetsThem() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try await JobStore(dataDirectory: directory)
        let old = "job-0007-aaaaaaaa"
        let recent = "job-0009-bbbbbbbb"
        let request = try String(decoding: JSONEncoder().encode(Request(keepWork: true)), as: UTF8.self)
        for (id, ended, state) in [(old, Date(timeIntervalSinceNow: -3 * 86400), JobState.done), (recent, Date(timeIntervalSinceNow: -600), .failed)] {
            try await store.insertJob(
                id: id, source: "/src.mp4", output: "\(directory)/\(id).mp4", request: request,
                workDirectory: "\(directory)/jobs/\(id)", at: ended - 120)
            try await store.updateJob(id, state: .running, phase: "encoding", at: ended - 100)
            try await store.updateJob(id, state: state, phase: "finished", error: state == .failed ? "no node could encode it" : nil, at: ended)
        }
        var logger = Logger(label: "farm.test")
        logger.logLevel = .critical
        var configuration = CoordinatorConfiguration(dataDirectory: directory, joinToken: "token", logger: logger)
        configuration.cleanup.retentionSeconds = 86400
        let coordinator = Coordinator(configuration: configuration)
        #expect(try await coordinator.open().isEmpty)

        #expect(await coordinator.listJobs().map(\.id) == [old, recent])
        let failed = try #require(await coordinator.status(recent))
        #expect(failed.state == .failed && failed.error == "no node could encode it" && failed.phase == "finished")
        #expect(await coordinator.status(old)?.state == .done)
        #expect(await coordinator.status(old)?.progress == 1)
        #expect(try await coordinator.waitForCompletion(old).state == .done)

        // Cleanup forgets the job past the retention, store and memory alike; the other stays.
        let report = await coordinator.cleanUp()
        #expect(report.jobsForgotten == [old])
        #expect(await coordinator.status(old) == nil)
        #expect(await coordinator.listJobs().map(\.id) == [recent])
        #expect(try await store.job(old) == nil)
    }
}
