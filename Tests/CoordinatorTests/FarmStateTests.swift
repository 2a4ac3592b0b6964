@testable import FarmCoordinator
import FarmBenchmarks
import FarmMedia
import FarmProtocol
import Testing

/// The coordinator's decisions, driven directly with a fake clock: no processes, no sockets.
@Suite struct FarmStateTests {
    /// A fleet and jobs on a clock that only moves when the test says so.
    struct Farm {
        var state: FarmState
        var now = 0.0
        /// Every effect so far, in order.
        var effects: [FarmEffect] = []

        init(rules: FarmState.Rules = FarmState.Rules()) { state = FarmState(rules: rules) }

        mutating func take(_ new: [FarmEffect]) { effects += new }

        @discardableResult
        mutating func join(_ name: String, slots: UInt16 = 1, capabilities: String = "{}") -> UInt64 {
            let hello = Hello(nodeID: name, proof: [], slots: slots, threads: 1, capabilitiesJSON: capabilities)
            let (session, new) = state.nodeJoined(hello, address: "10.0.0.1:1", now: now)
            take(new)
            return session
        }

        /// A running job of `segments` ready segments of `seconds` each, `frames` frames each.
        mutating func job(_ id: String, segments: Int, seconds: Double = 4, frames: Int = 100, labels: [String]? = nil) {
            var request = JobRequest(source: "/in/\(id).mp4", output: "/out/\(id).mp4")
            request.nodeLabels = labels
            state.jobQueued(id: id, request: request, workDirectory: "/work/\(id)", now: now)
            take(state.jobStarted(id))
            let plans = (0..<segments).map {
                SegmentPlan(index: $0, uniformFrames: frames)
            }
            take(
                state.jobPlanned(
                    id, segments: plans.map { FarmState.Segment(plan: $0) },
                    segmentSeconds: Array(repeating: seconds, count: segments), settings: FarmStateTests.settings,
                    parameters: nil, totalFrames: segments * frames, sourceSeconds: Double(segments) * seconds, now: now))
            for i in 0..<segments {
                take(state.segmentSplit(id, index: i, path: "/work/\(id)/src-\(i).pkt", bytes: 1000, checksum: [1], now: now))
            }
        }

        mutating func tick(to time: Double) {
            now = time
            take(state.tick(now: now))
        }

        /// The tasks sent to a session so far (by the assign effects), in order.
        func assigned(to session: UInt64) -> [Assign] {
            effects.compactMap {
                if case .sendSegment(session, let assign, _) = $0 { assign } else { nil }
            }
        }

        func cancels(to session: UInt64) -> [UInt64] {
            effects.compactMap { if case .send(session, .cancel(let id)) = $0 { id } else { nil } }
        }

        func closes(_ session: UInt64) -> Bool {
            effects.contains { if case .close(session, _) = $0 { true } else { false } }
        }

        var endedJobs: [String] { effects.compactMap { if case .jobEnded(let id) = $0 { id } else { nil } } }

        var segmentsDone: [String] { effects.compactMap { if case .segmentsDone(let id) = $0 { id } else { nil } } }

        /// The node finishes a task with the right frames.
        mutating func complete(_ session: UInt64, _ assign: Assign) {
            let result = TaskResult(
                taskID: assign.taskID, encoder: "libx264", frames: assign.expectedFrames, byteLength: 10, checksum: [2],
                decodeSeconds: 0.1, encodeSeconds: 1)
            take(state.taskCompleted(session, result, path: "/work/enc-\(assign.taskID).pkt", parameters: FarmStateTests.parameters, now: now))
        }

        func segment(_ job: String, _ index: Int) -> FarmState.Segment { state.jobs[job]!.segments[index] }

        /// A job of 3 segments and a node `name` whose first two results the verifier refuses (from `host`).
        mutating func refusedTwice(_ name: String, evidence: String, host: String) throws -> UInt64 {
            job("a", segments: 3)
            let node = join(name)
            for round in 0..<2 {
                tick(to: Double(round) * 2)
                let held = try #require(state.nodes[node]?.inFlight.first)
                take(state.resultRefused(node, taskID: held, evidence: evidence, host: host, wallClock: 1e9, now: now))
            }
            return node
        }
    }

    static let settings = StateFixtures.settings(width: 320, height: 240)

    /// An h264 stream header, as a packet file would carry it.
    static let parameters = StateFixtures.parameters(width: 320, height: 240)

    @Test func aJoiningNodeGetsOneSegmentPerSlotAndTheLeasesArePersisted() {
        var farm = Farm()
        farm.job("a", segments: 3)
        let node = farm.join("n1", slots: 2)
        #expect(farm.assigned(to: node).map(\.segmentIndex) == [0, 1])
        let leases = farm.effects.filter { if case .persist(.lease) = $0 { true } else { false } }
        #expect(leases.count == 2)
        #expect(farm.segment("a", 0).phase == .leased)
        #expect(farm.segment("a", 2).phase == .ready)
    }

    @Test func claimedSlotsAreCapped() {
        var rules = FarmState.Rules()
        rules.maxNodeSlots = 4
        var farm = Farm(rules: rules)
        farm.job("a", segments: 10)
        let node = farm.join("greedy", slots: 60_000)
        #expect(farm.state.nodes[node]?.slots == 4)
        #expect(farm.assigned(to: node).count == 4)
    }

    @Test func aClaimedCalibrationStealsNoWork() throws {
        var farm = Farm()
        let honest = farm.join("honest")
        let greedy = farm.join("greedy", capabilities: #"{"calibration": {"h264": 1000000, "hevc": 1e300}}"#)
        farm.job("a", segments: 6)
        // The claim is kept for the status, and the scheduler knows nothing of either node's speed.
        #expect(farm.state.nodes[greedy]?.capabilitiesJSON.contains("1000000") == true)
        #expect(farm.state.speeds.speeds(node: "greedy").isEmpty)
        #expect(farm.assigned(to: honest).count == 1 && farm.assigned(to: greedy).count == 1)
        // The greedy node turns out slow: 4 s of video in 100 s. Its speed is what the coordinator timed.
        farm.now = 100
        farm.complete(greedy, try #require(farm.assigned(to: greedy).first))
        let measured = try #require(farm.state.speeds.speeds(node: "greedy")["h264"])
        #expect(abs(measured - 0.04) < 0.001, "\(measured)")
    }

    @Test func aJobThatRequiresLabelsGoesOnlyToNodesThatCarryThem() throws {
        var rules = FarmState.Rules()
        rules.nodeLabels = ["vault": ["trusted"]]
        var farm = Farm(rules: rules)
        // The cloud node claims the label; without acceptNodeLabels the claim does not count.
        let cloud = farm.join("cloud", slots: 2, capabilities: #"{"labels": ["trusted"]}"#)
        let vault = farm.join("vault", slots: 1)
        farm.job("secret", segments: 3, labels: ["trusted"])
        farm.job("open", segments: 3)
        for round in 1...12 {
            for session in [cloud, vault] {
                for task in farm.state.nodes[session]?.inFlight.sorted() ?? [] {
                    farm.complete(session, try #require(farm.assigned(to: session).first { $0.taskID == task }))
                }
            }
            farm.tick(to: Double(round))
        }
        let secret = farm.assigned(to: vault).filter { $0.jobID == "secret" }.map(\.segmentIndex).sorted()
        #expect(secret == [0, 1, 2], "every segment of the labelled job on the labelled node")
        #expect(farm.assigned(to: cloud).allSatisfy { $0.jobID == "open" }, "\(farm.assigned(to: cloud).map(\.jobID))")
        #expect(farm.state.jobs["secret"]?.allSegmentsDone == true && farm.state.jobs["open"]?.allSegmentsDone == true)
        #expect(farm.state.nodeStatuses(now: farm.now).map(\.labels) == [[], ["trusted"]])
        #expect(farm.state.nodeStatuses(now: farm.now).first?.claimedLabels == ["trusted"])

        // Believing claims, the cloud node carries the label too.
        rules.acceptNodeLabels = true
        var believing = Farm(rules: rules)
        let claimed = believing.join("cloud", capabilities: #"{"labels": ["trusted", "Not A Label"]}"#)
        #expect(believing.state.nodes[claimed]?.labels == ["trusted"])
        believing.job("secret", segments: 1, labels: ["gpu", "trusted"])
        believing.tick(to: 1)
        #expect(believing.assigned(to: claimed).isEmpty, "a node without every label gets nothing of the job")
    }

    @Test func aRefusedResultQuarantinesAtOnceAndASecondBans() throws {
        let evidence = "segment 0 refused: frame 3 has SSIM 0.412 against the source, below 0.93"
        // Default rules: the first refusal quarantines the node at once; its segment goes to another node.
        var farm = Farm()
        farm.job("a", segments: 1)
        let bad = farm.join("bad")
        let task = try #require(farm.assigned(to: bad).first)
        farm.take(farm.state.resultRefused(bad, taskID: task.taskID, evidence: evidence, host: "203.0.113.5", wallClock: 1e9, now: farm.now))
        #expect(farm.state.quarantined["bad"]?.reason.contains("SSIM 0.412") == true)
        #expect(farm.state.bans.isEmpty)
        #expect(farm.state.refusedResults == 1)
        let good = farm.join("good")
        farm.tick(to: 1)
        #expect(farm.assigned(to: good).contains { $0.segmentIndex == 0 }, "the refused segment goes to the good node")
        #expect(farm.assigned(to: bad).count == 1, "a quarantined node gets nothing new")

        // Without quarantine time, the second refusal bans: id and public address, sessions closed.
        var rules = FarmState.Rules()
        rules.quarantine.seconds = 0
        var second = Farm(rules: rules)
        let node = try second.refusedTwice("bad", evidence: evidence, host: "203.0.113.5")
        let ban = try #require(second.state.ban(nodeID: "bad", host: nil))
        #expect(ban.reason == "2 results refused by the verifier" && ban.evidence == evidence && !ban.manual)
        #expect(ban.address == "203.0.113.5")
        #expect(second.state.ban(nodeID: "renamed", host: "203.0.113.5")?.nodeID == "bad", "a new id from the same address")
        #expect(second.closes(node))
        #expect(second.effects.contains { if case .persist(.banNode(let b)) = $0 { b == ban } else { false } })
        // Lifted: nothing of it stays.
        let lifted = second.state.unban("bad")
        #expect(lifted.ban == ban && second.state.ban(nodeID: "bad", host: "203.0.113.5") == nil)
        #expect(second.state.unban("bad").ban == nil)

        // A private or loopback address is not banned with the node.
        var local = Farm(rules: rules)
        _ = try local.refusedTwice("lan", evidence: evidence, host: "10.0.0.7")
        #expect(local.state.ban(nodeID: "lan", host: nil)?.address == nil)
        #expect(local.state.ban(nodeID: "other", host: "10.0.0.7") == nil)
    }

    @Test func hostileProgressIsIgnoredAndHonestProgressExtendsTheLease() throws {
        var farm = Farm()
        farm.job("a", segments: 1)
        let node = farm.join("n1")
        let task = try #require(farm.assigned(to: node).first)
        let deadline = try #require(farm.state.tasks[task.taskID]?.deadline)
        // Frames beyond the segment's, and for a task it does not hold: ignored, nothing traps.
        farm.take(farm.state.heartbeat(node, Heartbeat(activeTasks: [TaskProgress(taskID: task.taskID, framesDone: .max)]), now: 1))
        farm.take(farm.state.heartbeat(node, Heartbeat(activeTasks: [TaskProgress(taskID: 999, framesDone: 5)]), now: 1))
        #expect(farm.state.tasks[task.taskID]?.framesDone == 0)
        farm.take(farm.state.heartbeat(node, Heartbeat(activeTasks: [TaskProgress(taskID: task.taskID, framesDone: 50)]), now: 100))
        #expect(farm.state.tasks[task.taskID]?.framesDone == 50)
        #expect(try #require(farm.state.tasks[task.taskID]?.deadline) > deadline)
        #expect(farm.effects.contains { if case .persist(.renewLease) = $0 { true } else { false } })
    }

    @Test func aNodeThatCreepsAFrameAtATimeLosesTheSegmentAtTheHardCap() throws {
        var farm = Farm()
        farm.state.policy = SchedulingPolicy(allowsDuplicates: false)
        farm.job("a", segments: 1, frames: 100)
        let creeper = farm.join("creeper")
        let task = try #require(farm.assigned(to: creeper).first)
        let first = try #require(farm.state.tasks[task.taskID]?.deadline)
        let other = farm.join("other")
        var time = 0.0
        var lostAt: Double?
        while time < 2000, lostAt == nil {
            time += 10
            let progress = Heartbeat(activeTasks: [TaskProgress(taskID: task.taskID, framesDone: UInt64(time / 10))])
            farm.take(farm.state.heartbeat(creeper, progress, now: time))
            farm.take(farm.state.heartbeat(other, Heartbeat(activeTasks: []), now: time))
            farm.tick(to: time)
            if !farm.assigned(to: other).isEmpty { lostAt = time }
        }
        // Progress extended the lease past its first deadline, but not past 4 whole leases.
        let lost = try #require(lostAt, "the creeping node kept the segment for 2000 s")
        #expect(lost > first + 10, "\(lost) vs the first deadline \(first)")
        #expect(lost <= 4 * first + 20, "\(lost) vs the cap \(4 * first)")
        #expect(farm.cancels(to: creeper) == [task.taskID])
    }

    @Test func aLeaseWithoutProgressExpiresAndTheSegmentGoesToAnotherNode() throws {
        var farm = Farm()
        farm.state.policy = SchedulingPolicy(allowsDuplicates: false)
        farm.job("a", segments: 1)
        let stuck = farm.join("stuck")
        let task = try #require(farm.assigned(to: stuck).first)
        let deadline = try #require(farm.state.tasks[task.taskID]?.deadline)
        let other = farm.join("other")
        #expect(farm.assigned(to: other).isEmpty)
        // Heartbeats keep the connection alive, but no frame gets done.
        var time = 0.0
        while time <= deadline {
            time += 10
            farm.take(farm.state.heartbeat(stuck, Heartbeat(activeTasks: []), now: time))
            farm.take(farm.state.heartbeat(other, Heartbeat(activeTasks: []), now: time))
            farm.tick(to: time)
        }
        #expect(farm.cancels(to: stuck) == [task.taskID])
        #expect(!farm.closes(stuck))
        // After its backoff the segment goes to the node that did not let it expire.
        farm.tick(to: time + 1)
        #expect(farm.assigned(to: other).map(\.segmentIndex) == [0])
        #expect(farm.state.jobs["a"]?.state == .running)
        #expect(farm.segment("a", 0).avoidedNodes == ["stuck"])
    }

    @Test func aSilentNodeIsClosedByTheClock() {
        var farm = Farm()
        let node = farm.join("quiet")
        farm.tick(to: 29)
        #expect(!farm.closes(node))
        farm.tick(to: 31)
        #expect(farm.closes(node))
    }

    @Test func aNodeThatLeavesGivesItsSegmentsBackAfterABackoff() throws {
        var farm = Farm()
        farm.job("a", segments: 2)
        let first = farm.join("n1", slots: 2)
        #expect(farm.assigned(to: first).count == 2)
        farm.take(farm.state.nodeLeft(first, reason: "gone", now: 1))
        #expect(farm.segment("a", 0).phase == .ready)
        #expect(farm.effects.contains { if case .persist(.release(_, 0, _, nil)) = $0 { true } else { false } })
        let second = farm.join("n2", slots: 2)
        #expect(farm.assigned(to: second).isEmpty, "the backoff holds the segments back")
        farm.tick(to: 1.6)
        #expect(farm.assigned(to: second).count == 2)
    }

    @Test func aSegmentThatFailsOnEveryNodeFailsItsJobWithTheReason() throws {
        var farm = Farm()
        farm.job("a", segments: 1)
        let nodes = (1...3).map { farm.join("n\($0)") }
        for round in 0..<3 {
            let holder = try #require(nodes.first { farm.state.nodes[$0]!.inFlight.count == 1 })
            let task = try #require(farm.state.nodes[holder]!.inFlight.first)
            farm.take(farm.state.taskFailed(holder, taskID: task, reason: "decoder error \(round)", retryable: true, now: farm.now))
            farm.tick(to: farm.now + 40)
        }
        #expect(farm.state.jobs["a"]?.state == .failed)
        let error = try #require(farm.state.jobs["a"]?.error)
        #expect(error.contains("segment 0 failed 3 times on 3 nodes"))
        #expect(error.contains("decoder error 2"))
        #expect(farm.endedJobs == ["a"])
    }

    @Test func aNodeThatKeepsFailingIsQuarantined() throws {
        var farm = Farm()
        farm.job("a", segments: 3)
        let bad = farm.join("bad")
        for _ in 0..<3 {
            let task = try #require(farm.state.nodes[bad]!.inFlight.first)
            farm.take(farm.state.taskFailed(bad, taskID: task, reason: "disk full", retryable: true, kind: .node, now: farm.now))
            farm.tick(to: farm.now + 31)
            farm.take(farm.state.heartbeat(bad, Heartbeat(activeTasks: []), now: farm.now))
        }
        #expect(farm.state.quarantined["bad"] != nil)
        #expect(farm.state.nodes[bad]!.inFlight.isEmpty)
        #expect(farm.effects.contains { if case .persist(.quarantineNode(id: "bad", _, _)) = $0 { true } else { false } })
        let good = farm.join("good")
        #expect(farm.assigned(to: good).count == 1)
        #expect(farm.state.nodeStatuses(now: farm.now).first?.quarantineReason?.contains("disk full") == true)
    }

    @Test func aRefusalCountsAgainstNothing() throws {
        var farm = Farm()
        farm.job("a", segments: 1)
        let node = farm.join("n1")
        let task = try #require(farm.assigned(to: node).first)
        farm.take(farm.state.taskFailed(node, taskID: task.taskID, reason: "draining", retryable: false, kind: .refused, now: 0))
        // Leased again at once (no backoff), and the refused lease is not counted as an attempt.
        #expect(farm.assigned(to: node).count == 2)
        #expect(farm.segment("a", 0).attempts == 1)
        #expect(farm.segment("a", 0).avoidedNodes.isEmpty)
        #expect(farm.segment("a", 0).failures.isEmpty)
        #expect(farm.state.jobs["a"]?.state == .running)
    }

    @Test func resultsCountOnlyFromTheNodeThatHoldsTheTask() throws {
        var farm = Farm()
        farm.job("a", segments: 2)
        let holder = farm.join("holder", slots: 2)
        let impostor = farm.join("impostor")
        let tasks = farm.assigned(to: holder)
        #expect(tasks.count == 2)
        farm.complete(impostor, tasks[0])
        #expect(farm.segment("a", 0).phase == .leased)
        farm.complete(holder, tasks[0])
        #expect(farm.segment("a", 0).phase == .done)
        #expect(farm.segmentsDone.isEmpty)
        farm.complete(holder, tasks[1])
        #expect(farm.segmentsDone == ["a"])
        #expect(farm.state.jobs["a"]?.encodersByNode == ["holder": "libx264"])
        // A second result for a task already done changes nothing.
        farm.complete(holder, tasks[1])
        #expect(farm.segmentsDone == ["a"])
    }

    @Test func aStragglerIsDuplicatedAndTheFirstResultWins() throws {
        var farm = Farm()
        farm.job("a", segments: 2)
        let slow = farm.join("slow")
        let fast = farm.join("fast")
        let slowTask = try #require(farm.assigned(to: slow).first)
        let fastTask = try #require(farm.assigned(to: fast).first)
        // The fast node finishes at once; the slow one reports little progress for a long time.
        farm.now = 2
        farm.complete(fast, fastTask)
        for time in stride(from: 3.0, through: 60, by: 1) {
            farm.take(farm.state.heartbeat(slow, Heartbeat(activeTasks: [TaskProgress(taskID: slowTask.taskID, framesDone: 1)]), now: time))
            farm.take(farm.state.heartbeat(fast, Heartbeat(activeTasks: []), now: time))
            farm.tick(to: time)
        }
        let copies = farm.assigned(to: fast).filter { $0.segmentIndex == slowTask.segmentIndex }
        #expect(copies.count == 1, "one duplicate of the straggling segment on the idle node")
        let copy = try #require(copies.first)
        farm.complete(fast, copy)
        #expect(farm.segment("a", Int(slowTask.segmentIndex)).phase == .done)
        #expect(farm.cancels(to: slow) == [slowTask.taskID])
        #expect(farm.effects.contains { if case .persist(.moveLease) = $0 { true } else { false } })
        #expect(farm.segmentsDone == ["a"])
    }

    @Test func drainingNodesTakeNoNewWork() {
        var farm = Farm()
        let node = farm.join("n1")
        farm.take(farm.state.nodeDraining(node))
        farm.job("a", segments: 1)
        #expect(farm.assigned(to: node).isEmpty)
        let other = farm.join("n2")
        #expect(farm.assigned(to: other).count == 1)
        farm.take(farm.state.drainAll())
        #expect(farm.effects.contains { if case .send(other, .drain) = $0 { true } else { false } })
    }

    @Test func cancellingAJobCancelsItsTasksOnTheirNodes() throws {
        var farm = Farm()
        farm.job("a", segments: 2)
        let node = farm.join("n1", slots: 2)
        let tasks = farm.assigned(to: node).map(\.taskID)
        farm.take(farm.state.end("a", reason: "cancelled", state: .cancelled, now: 1))
        #expect(farm.cancels(to: node).sorted() == tasks.sorted())
        #expect(farm.state.tasks.isEmpty)
        #expect(farm.state.nodes[node]?.inFlight.isEmpty == true)
        #expect(farm.endedJobs == ["a"])
        // Its results, if they still come, are not wanted.
        #expect(farm.state.resultArriving(node, taskID: tasks[0], now: 2) == nil)
        #expect(farm.state.expectations(node, taskID: tasks[0]) == nil)
    }

    @Test func theResultByteLimitFollowsTheSegmentAndCannotOverflow() {
        #expect(ResultExpectations.byteLimit(sourceBytes: 0) == 256 << 20)
        #expect(ResultExpectations.byteLimit(sourceBytes: 1 << 30) == 16 << 30)
        #expect(ResultExpectations.byteLimit(sourceBytes: .max) == .max)
    }

    @Test func credentialsInASourceURLNeverReachTheStatus() {
        var farm = Farm()
        let source = "https://user:secret@media.example/clip.mp4?X-Amz-Signature=abc&X-Amz-Credential=key"
        farm.state.jobQueued(id: "u", request: JobRequest(source: source, output: "/out/u.mp4"), workDirectory: "/w", now: 0)
        let shown = farm.state.status(farm.state.jobs["u"]!, now: 0).source
        #expect(shown == "https://***@media.example/clip.mp4?***")
        #expect(!shown.contains("secret") && !shown.contains("abc") && !shown.contains("key"))
        // Paths and URLs without credentials are shown as they are.
        #expect(SourceURL.redacted("/data/in/clip.mp4") == "/data/in/clip.mp4")
        #expect(SourceURL.redacted("http://127.0.0.1:8000/clip.mp4") == "http://127.0.0.1:8000/clip.mp4")
    }

    @Test func aJobNoNodeCanRunHasNoETARatherThanAnInfiniteOne() {
        var farm = Farm()
        let node = farm.join("n1")
        farm.take(farm.state.nodeDraining(node))
        farm.job("a", segments: 2)
        farm.state.refreshPredictions(now: 1)
        #expect(farm.state.predictedFinish["a"] == .infinity)
        #expect(farm.state.status(farm.state.jobs["a"]!, now: 1).etaSeconds == nil)
    }
}
