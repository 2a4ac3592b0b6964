import FarmCoordinator
import FarmBenchmarks
import Testing

/// The speed-aware scheduling policy and its simulation.
@Suite struct SchedulingTests {
    let policy = SchedulingPolicy()

    func segments(_ job: String, _ seconds: [Double]) -> [SchedulerSegment] {
        seconds.enumerated().map { SchedulerSegment(jobID: job, index: $0.offset, seconds: $0.element) }
    }

    /// Runs `policy` to the end with exact durations, as the coordinator would with every estimate
    /// right; returns the segments each node ran and each job's finish.
    func runExactly(
        _ policy: SchedulingPolicy, nodes: [SchedulerNode], ready: [SchedulerSegment]
    ) -> (byNode: [UInt64: Int], finish: [String: Double]) {
        var nodes = nodes
        var ready = ready
        var running: [(task: SchedulerRunning, end: Double)] = []
        var byNode: [UInt64: Int] = [:]
        var finish: [String: Double] = [:]
        var now = 0.0
        var nextID: UInt64 = 1
        while !ready.isEmpty || !running.isEmpty {
            for decision in policy.decide(nodes: nodes, ready: ready, running: running.map(\.task), now: now) {
                guard case .assign(let job, let index, let node) = decision,
                    let r = ready.firstIndex(where: { $0.jobID == job && $0.index == index }),
                    let n = nodes.firstIndex(where: { $0.id == node })
                else {
                    Issue.record("unexpected decision \(decision)")
                    return (byNode, finish)
                }
                let segment = ready.remove(at: r)
                nodes[n].busySlots += 1
                let task = SchedulerRunning(
                    taskID: nextID, jobID: job, index: index, node: node, startedAt: now, seconds: segment.seconds)
                nextID += 1
                running.append((task, now + segment.seconds / nodes[n].speeds[""]!))
            }
            guard let next = running.map(\.end).min() else { break }
            now = next
            for (task, end) in running where end <= now {
                nodes[nodes.firstIndex { $0.id == task.node }!].busySlots -= 1
                byNode[task.node, default: 0] += 1
                finish[task.jobID] = max(finish[task.jobID] ?? 0, end)
            }
            running.removeAll { $0.end <= now }
        }
        return (byNode, finish)
    }

    // MARK: - Speed

    @Test func fasterNodesGetMoreSegments() {
        let nodes = [1.0, 2, 4, 8].enumerated().map { SchedulerNode(id: UInt64($0.offset + 1), slots: 1, speed: $0.element) }
        let (byNode, _) = runExactly(policy, nodes: nodes, ready: segments("a", Array(repeating: 10, count: 30)))
        #expect(byNode.values.reduce(0, +) == 30)
        #expect(byNode[4, default: 0] > byNode[2, default: 0])
        #expect(byNode[3, default: 0] > byNode[1, default: 0])
        #expect(byNode[4, default: 0] >= 3 * max(byNode[1, default: 0], 1))
    }

    @Test func simulatedFastNodesFinishMoreSegments() {
        let scenario = SchedulerSimulation.Scenario(
            name: "two", speeds: [1, 8], videoHours: 0.25, durationNoise: 0)
        let outcome = SchedulerSimulation.run(scenario, policy: .farm(policy))
        #expect(outcome.segmentsByNode[1] > 4 * outcome.segmentsByNode[0])
    }

    @Test func tailSegmentWaitsForAFastNodeThatFreesSoon() {
        // The 8x node frees at t=2 and would finish the 36 s segment at 6.5; the idle 1x node at 37.
        let nodes = [
            SchedulerNode(id: 1, name: "slow", slots: 1, speed: 1),
            SchedulerNode(id: 2, name: "fast", slots: 1, busySlots: 1, speed: 8),
        ]
        let busy = SchedulerRunning(taskID: 9, jobID: "a", index: 0, node: 2, startedAt: 0, seconds: 16)
        let ready = segments("a", [16, 36]).filter { $0.index == 1 }
        #expect(policy.decide(nodes: nodes, ready: ready, running: [busy], now: 1).isEmpty)

        // When it frees, it takes the segment.
        var freed = nodes
        freed[1].busySlots = 0
        #expect(policy.decide(nodes: freed, ready: ready, running: [], now: 2) == [.assign(jobID: "a", index: 1, node: 2)])

        // A fast node busy for a long time does not hold the segment back.
        let long = SchedulerRunning(taskID: 9, jobID: "a", index: 0, node: 2, startedAt: 0, seconds: 320)
        #expect(policy.decide(nodes: nodes, ready: ready, running: [long], now: 1) == [.assign(jobID: "a", index: 1, node: 1)])
    }

    @Test func unknownSpeedsFallBackToTheMedian() {
        let fleet = [
            SchedulerNode(id: 1, slots: 1, speeds: ["h264": 2, "hevc": 1]),
            SchedulerNode(id: 2, slots: 1, speeds: ["h264": 4]),
            SchedulerNode(id: 3, slots: 1, speeds: ["h264": 9]),
            SchedulerNode(id: 4, slots: 1, speeds: [:]),
        ]
        #expect(SchedulingPolicy.effectiveSpeed(of: fleet[3], codec: "h264", fleet: fleet) == 4)
        #expect(SchedulingPolicy.effectiveSpeed(of: fleet[2], codec: "h264", fleet: fleet) == 9)
        #expect(SchedulingPolicy.effectiveSpeed(of: fleet[3], codec: "hevc", fleet: fleet) == 1)
        #expect(SchedulingPolicy.effectiveSpeed(of: fleet[3], codec: "av1", fleet: fleet) == 1)
        #expect(SchedulingPolicy.fleetMedian(codec: "h264", fleet: Array(fleet.prefix(2))) == 3)

        // A node of unknown speed is planned as a median one: with 2x, ?, 8x and three equal
        // segments, the unknown node (5x by the median) takes one, as the 2x node would not.
        let nodes = [
            SchedulerNode(id: 1, slots: 1, speed: 2), SchedulerNode(id: 2, slots: 1, speed: nil),
            SchedulerNode(id: 3, slots: 1, speed: 8),
        ]
        let decisions = policy.decide(nodes: nodes, ready: segments("a", [40, 40, 40]), running: [], now: 0)
        #expect(Set(decisions.map(\.node)) == [2, 3])
    }

    @Test func speedEstimatesAreMovingAverages() {
        var estimates = SpeedEstimates(smoothing: 0.5)
        #expect(estimates.speeds(node: "n").isEmpty)
        estimates.record(node: "n", codec: "h264", sourceSeconds: 40, wallSeconds: 10)
        estimates.record(node: "n", codec: "h264", sourceSeconds: 20, wallSeconds: 10)
        #expect(estimates.speeds(node: "n")["h264"] == 3)
        estimates.record(node: "n", codec: "hevc", sourceSeconds: 10, wallSeconds: 10)
        #expect(estimates.speeds(node: "n")["hevc"] == 1)
        estimates.record(node: "n", codec: "hevc", sourceSeconds: 10, wallSeconds: 0)
        #expect(estimates.speeds(node: "n")["hevc"] == 1)
        estimates.forget(node: "n")
        #expect(estimates.speeds(node: "n").isEmpty)
    }

    // MARK: - Slots and order

    @Test func decisionsFitFreeSlotsAndSkipDrainingNodes() {
        let nodes = [
            SchedulerNode(id: 1, slots: 2, busySlots: 1, speed: 3),
            SchedulerNode(id: 2, slots: 4, busySlots: 0, speed: 5, draining: true),
            SchedulerNode(id: 3, slots: 3, busySlots: 3, speed: 8),
            SchedulerNode(id: 4, slots: 2, busySlots: 0, speed: 2),
        ]
        let running = [
            SchedulerRunning(taskID: 1, jobID: "a", index: 0, node: 1, startedAt: 0, seconds: 30),
            SchedulerRunning(taskID: 2, jobID: "a", index: 1, node: 3, startedAt: 0, seconds: 30),
            SchedulerRunning(taskID: 3, jobID: "a", index: 2, node: 3, startedAt: 0, seconds: 30),
            SchedulerRunning(taskID: 4, jobID: "a", index: 3, node: 3, startedAt: 0, seconds: 30),
        ]
        let ready = segments("a", Array(repeating: 30, count: 40)).filter { $0.index >= 4 }
        let decisions = policy.decide(nodes: nodes, ready: ready, running: running, now: 1)
        #expect(decisions.count == 3)
        #expect(decisions.filter { $0.node == 1 }.count == 1)
        #expect(decisions.filter { $0.node == 4 }.count == 2)
        #expect(Set(decisions.map(\.index)).count == decisions.count)
    }

    @Test func randomFleetsNeverGetMoreThanTheirFreeSlots() {
        var seed: UInt64 = 12345
        func next(_ n: Int) -> Int {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((seed >> 33) % UInt64(n))
        }
        for _ in 0..<200 {
            var nodes: [SchedulerNode] = []
            var running: [SchedulerRunning] = []
            for id in 1...UInt64(1 + next(8)) {
                let slots = 1 + next(3)
                let busy = next(slots + 1)
                nodes.append(
                    SchedulerNode(
                        id: id, slots: slots, busySlots: busy, speed: next(4) == 0 ? nil : Double(1 + next(8)),
                        draining: next(6) == 0))
                for b in 0..<busy {
                    running.append(
                        SchedulerRunning(
                            taskID: id * 10 + UInt64(b), jobID: "r", index: Int(id) * 10 + b, node: id,
                            startedAt: -Double(next(60)), seconds: Double(10 + next(40))))
                }
            }
            let ready = (0..<next(12)).map { SchedulerSegment(jobID: next(2) == 0 ? "a" : "b", index: $0, seconds: Double(5 + next(50))) }
            let decisions = policy.decide(nodes: nodes, ready: ready, running: running, now: 0)
            for node in nodes {
                let given = decisions.filter { $0.node == node.id }.count
                #expect(given <= node.freeSlots)
                if node.draining { #expect(given == 0) }
            }
            let keys = decisions.map { "\($0.jobID)/\($0.index)" }
            #expect(Set(keys).count == keys.count)
            for case .duplicate(let job, let index, let node) in decisions {
                // Only of a job with nothing ready, never on the original's node.
                #expect(!ready.contains { $0.jobID == job })
                #expect(running.first { $0.jobID == job && $0.index == index }?.node != node)
            }
        }
    }

    @Test func jobsAreServedInSubmissionOrder() {
        let nodes = (1...3).map { SchedulerNode(id: UInt64($0), slots: 1, speed: 1) }
        let ready = segments("old", [30, 30, 30, 30]) + segments("new", [30, 30])
        let decisions = policy.decide(nodes: nodes, ready: ready, running: [], now: 0)
        #expect(decisions.count == 3)
        #expect(decisions.allSatisfy { $0.jobID == "old" })

        // The older job's tail does not idle the fleet: the slots it leaves take the next job.
        let tail = segments("old", [30]) + segments("new", [30, 30])
        let more = policy.decide(nodes: nodes, ready: tail, running: [], now: 0)
        #expect(more.count == 3)
        #expect(more.filter { $0.jobID == "old" }.count == 1)

        // With exact durations the older job ends first.
        let big = (1...4).map { SchedulerNode(id: UInt64($0), slots: 1, speed: Double($0)) }
        let (_, finish) = runExactly(
            policy, nodes: big, ready: segments("old", Array(repeating: 20, count: 12)) + segments("new", Array(repeating: 20, count: 12)))
        #expect(finish["old"]! < finish["new"]!)
    }

    // MARK: - Duplicates

    /// A 1x node running a 36 s segment since t=0, an idle 8x node.
    func straggler(progress: Double? = nil, at time: Double? = nil) -> ([SchedulerNode], SchedulerRunning) {
        (
            [
                SchedulerNode(id: 1, name: "slow", slots: 1, busySlots: 1, speed: 1),
                SchedulerNode(id: 2, name: "fast", slots: 1, speed: 8),
            ],
            SchedulerRunning(
                taskID: 7, jobID: "a", index: 3, node: 1, startedAt: 0, seconds: 36, progress: progress, progressTime: time)
        )
    }

    @Test func lateSegmentIsDuplicatedWhenNothingIsReady() {
        let (nodes, task) = straggler()
        // On time: nothing.
        #expect(policy.decide(nodes: nodes, ready: [], running: [task], now: 30).isEmpty)
        // Slightly late (expected soon after): a copy would not beat it by the margin.
        #expect(policy.decide(nodes: nodes, ready: [], running: [task], now: 40).isEmpty)
        // Badly late: the 8x node runs it again.
        #expect(policy.decide(nodes: nodes, ready: [], running: [task], now: 50) == [.duplicate(jobID: "a", index: 3, node: 2)])
    }

    @Test func progressShowsAStragglerBeforeItsExpectedEnd() {
        // 10% done after 18 s: it will take 180 s instead of 36.
        let (nodes, task) = straggler(progress: 0.1, at: 18)
        #expect(policy.decide(nodes: nodes, ready: [], running: [task], now: 18) == [.duplicate(jobID: "a", index: 3, node: 2)])
        // On pace: nothing.
        let (_, onPace) = straggler(progress: 0.5, at: 18)
        #expect(policy.decide(nodes: nodes, ready: [], running: [onPace], now: 18).isEmpty)
    }

    @Test func noDuplicateWhileTheJobHasReadyWork() {
        let (nodes, task) = straggler()
        let ready = [SchedulerSegment(jobID: "a", index: 4, seconds: 36)]
        #expect(policy.decide(nodes: nodes, ready: ready, running: [task], now: 50) == [.assign(jobID: "a", index: 4, node: 2)])

        // Another job's ready work: the older job's straggler goes first, unless told otherwise.
        let other = [SchedulerSegment(jobID: "b", index: 0, seconds: 36)]
        #expect(policy.decide(nodes: nodes, ready: other, running: [task], now: 50) == [.duplicate(jobID: "a", index: 3, node: 2)])
        let strict = SchedulingPolicy(duplicatesWaitForAllJobs: true)
        #expect(strict.decide(nodes: nodes, ready: other, running: [task], now: 50) == [.assign(jobID: "b", index: 0, node: 2)])
        #expect(strict.decide(nodes: nodes, ready: [], running: [task], now: 50) == [.duplicate(jobID: "a", index: 3, node: 2)])
        #expect(SchedulingPolicy(allowsDuplicates: false).decide(nodes: nodes, ready: [], running: [task], now: 50).isEmpty)
    }

    @Test func atMostOneDuplicatePerSegment() {
        var (nodes, task) = straggler()
        nodes.append(SchedulerNode(id: 3, name: "fast2", slots: 1, busySlots: 1, speed: 8))
        nodes.append(SchedulerNode(id: 4, name: "fast3", slots: 1, speed: 8))
        var copy = task
        copy.taskID = 8
        copy.node = 3
        copy.startedAt = 45
        copy.isDuplicate = true
        #expect(policy.decide(nodes: nodes, ready: [], running: [task, copy], now: 50).isEmpty)

        // The duplicate failed: the segment still had its one.
        nodes[2].busySlots = 0
        var again = task
        again.hasBeenDuplicated = true
        #expect(policy.decide(nodes: nodes, ready: [], running: [again], now: 50).isEmpty)

        // Two idle fast nodes, one straggler: one copy.
        #expect(policy.decide(nodes: nodes, ready: [], running: [task], now: 50).count == 1)
    }

    @Test func duplicateNeverRunsOnTheOriginalsNode() {
        let nodes = [SchedulerNode(id: 1, slots: 2, busySlots: 1, speed: 8)]
        let task = SchedulerRunning(taskID: 1, jobID: "a", index: 0, node: 1, startedAt: 0, seconds: 36)
        #expect(policy.decide(nodes: nodes, ready: [], running: [task], now: 60).isEmpty)
    }

    // MARK: - Expected finish

    @Test func expectedFinishOfASimpleFleet() {
        // 3x and 1x nodes, four 30 s segments: three on the 3x node, one on the 1x node, done at 30.
        let nodes = [SchedulerNode(id: 1, slots: 1, speed: 3), SchedulerNode(id: 2, slots: 1, speed: 1)]
        let ready = segments("a", [30, 30, 30, 30])
        let eta = policy.expectedFinish(nodes: nodes, remaining: ready, running: [], now: 100)
        #expect(abs(eta["a"]! - 130) < 1e-6)
        let (_, actual) = runExactly(policy, nodes: nodes, ready: ready)
        #expect(abs(actual["a"]! - 30) < 1e-6)

        // A running task counts (the 3x node is busy until 10; the 1x node starts one at 5 and ends
        // at 35, before the 3x node would end a third); a second job comes after the first.
        var busy = nodes
        busy[0].busySlots = 1
        let running = SchedulerRunning(taskID: 1, jobID: "a", index: 0, node: 1, startedAt: 0, seconds: 30)
        let both = policy.expectedFinish(
            nodes: busy, remaining: Array(ready.dropFirst()) + segments("b", [30, 30, 30]), running: [running], now: 5)
        #expect(abs(both["a"]! - 35) < 1e-6)
        #expect(both["b"]! > both["a"]!)
        #expect(abs(both["b"]! - 60) < 1e-6)

        // No node to run it.
        #expect(policy.expectedFinish(nodes: [], remaining: ready, running: [], now: 0)["a"] == .infinity)
    }

    @Test func expectedFinishMatchesTheSimulatedRun() {
        let scenario = SchedulerSimulation.benchmarkScenarios()[0].exact
        let outcome = SchedulerSimulation.run(scenario, policy: .farm(policy))
        // At 10 % done the slowest nodes have no result yet and the coordinator takes no claimed calibration:
        // their speed is the median capped by the clock, which leaves about 2 % (it was under 2 % when a
        // node's own calibration claim seeded its speed). By 50 % every node is measured.
        #expect(outcome.etaError10Percent! < 3)
        #expect(outcome.etaError50Percent! < 2)
    }

    @Test func estimatedFinishOfRunningTasks() {
        let task = SchedulerRunning(taskID: 1, jobID: "a", index: 0, node: 1, startedAt: 10, seconds: 20)
        // On time: start + expected (20 s at 2x).
        #expect(SchedulingPolicy.estimatedFinish(of: task, speed: 2, now: 15) == 20)
        // 4 s late, no progress: 4 s more.
        #expect(SchedulingPolicy.estimatedFinish(of: task, speed: 2, now: 24) == 28)
        // Progress: a quarter done after 8 s, 32 s in all.
        var measured = task
        measured.progress = 0.25
        measured.progressTime = 18
        #expect(SchedulingPolicy.estimatedFinish(of: measured, speed: 2, now: 19) == 42)
        measured.progress = 1
        #expect(SchedulingPolicy.estimatedFinish(of: measured, speed: 2, now: 19) == 19)
    }

    // MARK: - Simulation

    @Test func fiftyNodeTwoHourJobNearTheLowerBound() {
        let noisy = SchedulerSimulation.benchmarkScenarios()[0]
        #expect(noisy.speeds.count == 50 && noisy.slotsPerNode == 1 && noisy.jobs == 1 && noisy.videoHours == 2)
        let exact = SchedulerSimulation.run(noisy.exact, policy: .farm(policy))
        let exactNaive = SchedulerSimulation.run(noisy.exact, policy: .naive)
        #expect(exact.ratio <= 1.05)
        #expect(exact.ratio < exactNaive.ratio)
        #expect(exact.duplicates == 0)

        // Durations ±10% off and a calibration ±5% off.
        let real = SchedulerSimulation.run(noisy, policy: .farm(policy))
        let naive = SchedulerSimulation.run(noisy, policy: .naive)
        #expect(real.ratio <= 1.10)
        #expect(real.ratio < naive.ratio)
        #expect(real.segments == exact.segments)
        #expect(real.lowerBound > 0 && real.makespan >= real.lowerBound)
    }

    @Test func smallFleetWithManySegmentsPerSlot() {
        // 120 segments on 4 slots: far from the end only the first placements are planned.
        let scenario = SchedulerSimulation.Scenario(
            name: "small", speeds: [1, 2, 4, 8], durationNoise: 0)
        let outcome = SchedulerSimulation.run(scenario, policy: .farm(policy))
        #expect(outcome.segments > 24 * 4)
        #expect(outcome.ratio <= 1.05)
        #expect(outcome.segmentsByNode == outcome.segmentsByNode.sorted())
    }

    @Test func duplicatesRescueStragglers() {
        let scenario = SchedulerSimulation.benchmarkScenarios()[0].withStragglers
        let with = SchedulerSimulation.run(scenario, policy: .farm(policy))
        let without = SchedulerSimulation.run(scenario, policy: .farm(SchedulingPolicy(allowsDuplicates: false)))
        #expect(with.duplicates > 0)
        #expect(with.duplicateWins > 0)
        #expect(with.makespan < without.makespan)
    }

    @Test func segmentLengthsFollowThePlannersDefault() {
        let lengths = SchedulerSimulation.segmentLengths(durationSeconds: 7200, totalSlots: 50, variation: 0.2, seed: 1)
        let target = SegmentPlanner.defaultSegmentSeconds(durationSeconds: 7200, totalSlots: 50)
        #expect(abs(lengths.reduce(0, +) - 7200) < 1e-6)
        #expect(lengths.dropLast().allSatisfy { $0 >= target * 0.8 - 1e-9 && $0 <= target * 1.2 + 1e-9 })
        #expect(lengths.count > 150 && lengths.count < 260)
    }
}
