public import FarmCoordinator
import FarmMedia
import FarmProtocol

/// A discrete-event simulation of a fleet encoding jobs, driven by the coordinator's own ``FarmState``
/// (with its `SchedulingPolicy`, or with the naive policy the coordinator used before it swapped in
/// for its decisions): the state leases at every completion and every tick, measures speeds from
/// finished segments, duplicates stragglers and cancels the losing copy, as in the coordinator.
public enum SchedulerSimulation {
    /// A fleet, its jobs and how far reality strays from the estimates.
    public struct Scenario: Sendable, Hashable, Codable {
        /// The scenario's name in reports.
        public var name: String
        /// How the speeds were drawn ("even", "random"), for reports.
        public var spread: String
        /// Each node's true speed per slot (source seconds per second).
        public var speeds: [Double]
        /// Slots per node.
        public var slotsPerNode: Int
        /// Jobs, all submitted at time 0.
        public var jobs: Int
        /// Each job's source duration in hours.
        public var videoHours: Double
        /// Segment lengths vary by up to this fraction around the planner's default length
        /// (keyframe-aligned cuts are not all equal).
        public var segmentVariation: Double
        /// The last fraction of each job is cut into segments of half the default length, as a
        /// planner could do to make the tail finer (0: every segment of the default length).
        public var tailSplit: Double
        /// Each task's duration varies by up to this fraction around seconds / speed.
        public var durationNoise: Double
        /// The chance that a task straggles (a node hiccup) and takes `stragglerFactor` times longer.
        public var stragglerProbability: Double
        /// How much longer a straggling task takes.
        public var stragglerFactor: Double
        /// Weight of each finished segment in the speed moving average.
        public var speedSmoothing: Double
        /// The coordinator re-runs the policy at least this often while slots are idle.
        public var tickSeconds: Double
        /// Seeds every random draw: a scenario always gives the same result.
        public var seed: UInt64

        /// A scenario; the defaults are the benchmark's noisy fleet.
        public init(
            name: String, spread: String = "custom", speeds: [Double], slotsPerNode: Int = 1, jobs: Int = 1,
            videoHours: Double = 2, segmentVariation: Double = 0.2, tailSplit: Double = 0, durationNoise: Double = 0.1,
            stragglerProbability: Double = 0, stragglerFactor: Double = 3,
            speedSmoothing: Double = 0.3, tickSeconds: Double = 1, seed: UInt64 = 1
        ) {
            self.name = name
            self.spread = spread
            self.speeds = speeds
            self.slotsPerNode = slotsPerNode
            self.jobs = jobs
            self.videoHours = videoHours
            self.segmentVariation = segmentVariation
            self.tailSplit = tailSplit
            self.durationNoise = durationNoise
            self.stragglerProbability = stragglerProbability
            self.stragglerFactor = stragglerFactor
            self.speedSmoothing = speedSmoothing
            self.tickSeconds = tickSeconds
            self.seed = seed
        }

        /// The same scenario with task durations that are exactly seconds / speed: no noise, no stragglers.
        public var exact: Scenario {
            var s = self
            s.name += "-exact"
            s.durationNoise = 0
            s.stragglerProbability = 0
            return s
        }

        /// The same scenario where 1% of the tasks straggle, taking three times longer (a node
        /// hiccup): the case duplicates are for.
        public var withStragglers: Scenario {
            var s = self
            s.name += "-stragglers"
            s.stragglerProbability = 0.01
            s.stragglerFactor = 3
            return s
        }

        /// The same scenario with the last 10% of each job cut into half-length segments.
        public var withTailSplit: Scenario {
            var s = self
            s.name += "-tailsplit"
            s.tailSplit = 0.1
            return s
        }
    }

    /// Which policy drives the simulated coordinator.
    public enum Policy: Sendable {
        /// The speed-aware policy.
        case farm(SchedulingPolicy)
        /// The coordinator's former behaviour: the node with the most free slots takes the lowest
        /// ready segment of the oldest job.
        case naive
    }

    /// What happened in one run.
    public struct Outcome: Sendable, Hashable, Codable {
        /// When the last job finished (seconds from submission).
        public var makespan: Double
        /// max(total work / total speed of all slots, longest segment / fastest speed).
        public var lowerBound: Double
        /// makespan / lowerBound.
        public var ratio: Double
        /// Segments of all jobs.
        public var segments: Int
        /// Duplicates started.
        public var duplicates: Int
        /// Duplicates whose result arrived first.
        public var duplicateWins: Int
        /// Slot-seconds spent on copies that lost and were cancelled.
        public var wastedSeconds: Double
        /// Each job's finish time.
        public var jobFinish: [Double]
        /// Segments each node finished (the winning copy counts), in the order of `Scenario.speeds`.
        public var segmentsByNode: [Int]
        /// Mean |predicted − actual| / actual finish, in percent, of the prediction made when each
        /// job was 10% done (nil for the naive policy, which predicts nothing).
        public var etaError10Percent: Double?
        /// The same at 50% done.
        public var etaError50Percent: Double?
    }

    /// `count` speeds spread evenly over `from...to`.
    public static func evenSpeeds(count: Int, from: Double = 1, to: Double = 8) -> [Double] {
        guard count > 1 else { return [to] }
        return (0..<count).map { from + (to - from) * Double($0) / Double(count - 1) }
    }

    /// `count` speeds drawn uniformly from `from...to` with a seeded generator.
    public static func randomSpeeds(count: Int, from: Double = 1, to: Double = 8, seed: UInt64) -> [Double] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in Double.random(in: from...to, using: &rng) }
    }

    /// The source durations of a job's segments: the planner's default length for the fleet,
    /// varied by up to ±`variation`, half of it in the last `tailSplit` of the job, a short tail
    /// joined to the segment before it as the planner does.
    public static func segmentLengths(
        durationSeconds: Double, totalSlots: Int, slotSpeeds: [Double] = [], variation: Double, tailSplit: Double = 0,
        seed: UInt64
    ) -> [Double] {
        let standard = SegmentPlanner.defaultSegmentSeconds(
            durationSeconds: durationSeconds, totalSlots: totalSlots, slotSpeeds: slotSpeeds)
        var rng = SplitMix64(seed: seed)
        var lengths: [Double] = []
        var left = durationSeconds
        while left > 0 {
            let target = left <= durationSeconds * tailSplit ? standard / 2 : standard
            let length = variation > 0 ? target * Double.random(in: (1 - variation)...(1 + variation), using: &rng) : target
            if left - length < target / 3 {
                lengths.append(left)
                left = 0
            } else {
                lengths.append(length)
                left -= length
            }
        }
        return lengths
    }

    /// The benchmark's scenarios: 50 nodes of 1x to 8x (even and seeded random), 1 and 2 slots per
    /// node, one 2-hour job and three submitted at once, task durations ±10% off; the coordinator
    /// learns each node's speed from its first results (a node's claimed calibration is not used); then a few of them exact, with stragglers, and with a finer tail.
    public static func benchmarkScenarios(nodes: Int = 50, videoHours: Double = 2) -> [Scenario] {
        var scenarios: [Scenario] = []
        for spread in ["even", "random"] {
            let speeds =
                spread == "even" ? evenSpeeds(count: nodes) : randomSpeeds(count: nodes, seed: 0x5EED)
            for slots in [1, 2] {
                for jobs in [1, 3] {
                    scenarios.append(
                        Scenario(
                            name: "\(spread)-\(slots)slot-\(jobs)job", spread: spread, speeds: speeds,
                            slotsPerNode: slots, jobs: jobs, videoHours: videoHours,
                            seed: UInt64(slots * 10 + jobs)))
                }
            }
        }
        let first = scenarios[0]
        let last = scenarios[scenarios.count - 1]
        return scenarios + [first.exact, first.withStragglers, last.withStragglers, first.withTailSplit]
    }

    /// One line of the benchmark: a scenario run with the farm policy and with the naive one.
    public struct BenchmarkRow: Sendable, Hashable, Codable {
        /// The scenario's name.
        public var name: String
        /// How node speeds were drawn.
        public var spread: String
        /// Nodes in the fleet.
        public var nodes: Int
        /// Slots per node.
        public var slots: Int
        /// Jobs submitted at once.
        public var jobs: Int
        /// Hours of video per job.
        public var videoHours: Double
        /// Segments of all jobs.
        public var segments: Int
        /// When the last job finished under the farm policy.
        public var makespanSeconds: Double
        /// See `Outcome.lowerBound`.
        public var lowerBoundSeconds: Double
        /// Farm makespan / lower bound.
        public var ratio: Double
        /// When the last job finished under the naive policy.
        public var naiveMakespanSeconds: Double
        /// Naive makespan / lower bound.
        public var naiveRatio: Double
        /// Duplicates started.
        public var duplicates: Int
        /// Duplicates that finished first.
        public var duplicateWins: Int
        /// Slot-seconds of cancelled losing copies.
        public var wastedSeconds: Double
        /// See `Outcome.etaError10Percent`.
        public var etaError10Percent: Double?
        /// See `Outcome.etaError50Percent`.
        public var etaError50Percent: Double?
        /// The larger of the two ETA errors.
        public var etaErrorPercent: Double?

        enum CodingKeys: String, CodingKey {
            case name, spread, nodes, slots, jobs, segments, duplicates, ratio
            case videoHours = "video_hours"
            case makespanSeconds = "makespan_s"
            case lowerBoundSeconds = "lower_bound_s"
            case naiveMakespanSeconds = "naive_makespan_s"
            case naiveRatio = "naive_ratio"
            case duplicateWins = "duplicate_wins"
            case wastedSeconds = "wasted_s"
            case etaError10Percent = "eta_error_10_pct"
            case etaError50Percent = "eta_error_50_pct"
            case etaErrorPercent = "eta_error_pct"
        }
    }

    /// Runs each scenario with `policy` and with the naive policy.
    public static func benchmark(
        _ scenarios: [Scenario] = benchmarkScenarios(), policy: SchedulingPolicy = SchedulingPolicy()
    ) -> [BenchmarkRow] {
        scenarios.map { scenario in
            let farm = run(scenario, policy: .farm(policy))
            let naive = run(scenario, policy: .naive)
            let eta = [farm.etaError10Percent, farm.etaError50Percent].compactMap { $0 }.max()
            return BenchmarkRow(
                name: scenario.name, spread: scenario.spread, nodes: scenario.speeds.count,
                slots: scenario.slotsPerNode, jobs: scenario.jobs, videoHours: scenario.videoHours,
                segments: farm.segments, makespanSeconds: farm.makespan, lowerBoundSeconds: farm.lowerBound,
                ratio: farm.ratio, naiveMakespanSeconds: naive.makespan, naiveRatio: naive.ratio,
                duplicates: farm.duplicates, duplicateWins: farm.duplicateWins, wastedSeconds: farm.wastedSeconds,
                etaError10Percent: farm.etaError10Percent, etaError50Percent: farm.etaError50Percent,
                etaErrorPercent: eta)
        }
    }

    /// Runs `scenario` to its end under `policy`.
    public static func run(_ scenario: Scenario, policy: Policy) -> Outcome {
        var world = World(scenario: scenario, policy: policy)
        return world.run(policy: policy)
    }

    /// The naive policy: while a slot is free, the node with the most free slots (the lowest id on
    /// a tie) takes the first ready segment (the lowest of the oldest job).
    static func naiveDecide(nodes: [SchedulerNode], ready: [SchedulerSegment]) -> [SchedulingDecision] {
        var free = nodes.map { $0.draining ? 0 : $0.freeSlots }
        var decisions: [SchedulingDecision] = []
        for segment in ready {
            var best: Int?
            for i in nodes.indices where free[i] > 0 {
                if let b = best, free[b] > free[i] || (free[b] == free[i] && nodes[b].id < nodes[i].id) { continue }
                best = i
            }
            guard let best else { break }
            free[best] -= 1
            decisions.append(.assign(jobID: segment.jobID, index: segment.index, node: nodes[best].id))
        }
        return decisions
    }
}

/// A seeded generator (SplitMix64): the simulation must give the same result on every run.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The simulated fleet while a run goes on: the coordinator's real ``FarmState`` takes every
/// decision (leases, duplicates, cancels, predictions); the world only plays the nodes, finishing each
/// task after its drawn duration and reporting progress once a second as a node's heartbeat does.
private struct World {
    struct Task {
        var id: UInt64
        var job: Int
        var index: Int
        var node: Int
        var start: Double
        var end: Double
        var frames: UInt64
    }

    typealias Scenario = SchedulerSimulation.Scenario

    /// Frames per simulated segment: enough that progress moves at every heartbeat.
    static let framesPerSegment = 10_000

    let scenario: Scenario
    let names: [String]
    let jobIDs: [String]
    let jobIndex: [String: Int]
    let lengths: [[Double]]
    var state: FarmState
    var sessions: [UInt64] = []
    var nodeOfSession: [UInt64: Int] = [:]
    var tasks: [UInt64: Task] = [:]
    var copies: [[Int]]
    var doneSeconds: [Double]
    var finish: [Double?]
    var predicted: [[Double?]]
    var duplicates = 0
    var duplicateWins = 0
    var finishedByNode: [Int]
    var wasted = 0.0
    var now = 0.0

    init(scenario: Scenario, policy: SchedulerSimulation.Policy) {
        self.scenario = scenario
        let n = scenario.speeds.count
        names = (0..<n).map { "node-\($0 + 1)" }
        jobIDs = (0..<scenario.jobs).map { "job-\($0 + 1)" }
        jobIndex = Dictionary(uniqueKeysWithValues: jobIDs.enumerated().map { ($0.element, $0.offset) })
        let seconds = scenario.videoHours * 3600
        lengths = (0..<scenario.jobs).map { j in
            SchedulerSimulation.segmentLengths(
                durationSeconds: seconds, totalSlots: n * scenario.slotsPerNode,
                slotSpeeds: scenario.speeds.flatMap { Array(repeating: $0, count: scenario.slotsPerNode) },
                variation: scenario.segmentVariation, tailSplit: scenario.tailSplit,
                seed: scenario.seed &* 7919 &+ UInt64(j))
        }
        var rules = FarmState.Rules()
        rules.maxNodeSlots = max(scenario.slotsPerNode, 1)
        state = FarmState(rules: rules)
        state.speeds = SpeedEstimates(smoothing: scenario.speedSmoothing)
        switch policy {
        case .farm(let p): state.policy = p
        case .naive: state.decide = { nodes, ready, _, _ in SchedulerSimulation.naiveDecide(nodes: nodes, ready: ready) }
        }
        copies = lengths.map { Array(repeating: 0, count: $0.count) }
        doneSeconds = Array(repeating: 0, count: scenario.jobs)
        finish = Array(repeating: nil, count: scenario.jobs)
        predicted = Array(repeating: [nil, nil], count: scenario.jobs)
        finishedByNode = Array(repeating: 0, count: n)
        // The nodes join knowing nothing of their speed: the coordinator learns it from their first results. Each
        // claims a calibration 100 times its speed, which the coordinator must ignore.
        for (i, speed) in scenario.speeds.enumerated() {
            let hello = Hello(
                nodeID: names[i], proof: [], slots: UInt16(clamping: scenario.slotsPerNode), threads: 1,
                capabilitiesJSON: #"{"calibration": {"h264": \#(speed * 2500)}}"#)
            let (session, effects) = state.nodeJoined(hello, address: "sim", now: 0)
            sessions.append(session)
            nodeOfSession[session] = i
            apply(effects)
        }
        // Every job is submitted at 0 and its segments are split at once.
        let frames = Self.framesPerSegment
        for (j, id) in jobIDs.enumerated() {
            state.jobQueued(id: id, request: JobRequest(source: id, output: id), workDirectory: id, now: 0)
            apply(state.jobStarted(id))
            let plans = lengths[j].indices.map { i in
                SegmentPlan(index: i, uniformFrames: frames)
            }
            apply(
                state.jobPlanned(
                    id, segments: plans.map { FarmState.Segment(plan: $0) }, segmentSeconds: lengths[j],
                    settings: World.settings, parameters: nil, totalFrames: plans.count * frames,
                    sourceSeconds: lengths[j].reduce(0, +), now: 0))
            for i in plans.indices {
                apply(state.segmentSplit(id, index: i, path: id, bytes: 1, checksum: [], now: 0))
            }
        }
    }

    static let settings = StateFixtures.settings(width: 1280, height: 720)

    /// The task's true duration: the same draw for the same segment and copy under every policy.
    func actualDuration(job: Int, index: Int, copy: Int, node: Int) -> Double {
        var rng = SplitMix64(seed: scenario.seed ^ (UInt64(job) << 48) ^ (UInt64(index) << 8) ^ UInt64(copy))
        _ = rng.next()
        let noise = scenario.durationNoise
        var factor = noise > 0 ? Double.random(in: (1 - noise)...(1 + noise), using: &rng) : 1
        if scenario.stragglerProbability > 0, Double.random(in: 0..<1, using: &rng) < scenario.stragglerProbability {
            factor *= scenario.stragglerFactor
        }
        return lengths[job][index] / scenario.speeds[node] * factor
    }

    /// Plays the nodes' side of what the state decided.
    mutating func apply(_ effects: [FarmEffect]) {
        for effect in effects {
            switch effect {
            case .sendSegment(let session, let assign, _):
                guard let node = nodeOfSession[session], let job = jobIndex[assign.jobID] else {
                    preconditionFailure("an assignment to an unknown node or job")
                }
                let index = Int(assign.segmentIndex)
                precondition(tasks.values.filter { $0.node == node }.count < scenario.slotsPerNode, "a busy slot leased")
                if state.tasks[assign.taskID]?.isDuplicate == true { duplicates += 1 }
                let duration = actualDuration(job: job, index: index, copy: copies[job][index], node: node)
                copies[job][index] += 1
                tasks[assign.taskID] = Task(
                    id: assign.taskID, job: job, index: index, node: node, start: now, end: now + duration,
                    frames: assign.expectedFrames)
            case .send(_, .cancel(let taskID)):
                if let loser = tasks.removeValue(forKey: taskID) { wasted += now - loser.start }
            case .segmentsDone(let id):
                if let j = jobIndex[id] { finish[j] = now }
            default:
                break
            }
        }
    }

    /// Each node's heartbeat: its tasks' frames done by now.
    mutating func heartbeats() {
        var progress: [Int: [TaskProgress]] = [:]
        for task in tasks.values {
            let share = min(max((now - task.start) / max(task.end - task.start, 1e-9), 0), 1)
            progress[task.node, default: []].append(
                TaskProgress(taskID: task.id, framesDone: UInt64(share * Double(task.frames))))
        }
        for (i, session) in sessions.enumerated() {
            apply(state.heartbeat(session, Heartbeat(activeTasks: progress[i] ?? []), now: now))
        }
    }

    /// Finishes every task that ends by `now`, in order of their ends.
    mutating func complete() {
        let clock = now
        while let task = tasks.values.filter({ $0.end <= clock + 1e-9 }).min(by: { ($0.end, $0.id) < ($1.end, $1.id) }) {
            tasks[task.id] = nil
            now = task.end
            if state.tasks[task.id]?.isDuplicate == true { duplicateWins += 1 }
            finishedByNode[task.node] += 1
            doneSeconds[task.job] += lengths[task.job][task.index]
            let result = TaskResult(
                taskID: task.id, encoder: "libx264", frames: task.frames, byteLength: 1, checksum: [],
                decodeSeconds: 0, encodeSeconds: task.end - task.start)
            apply(state.taskCompleted(sessions[task.node], result, path: "", parameters: World.parameters, now: now))
        }
        now = clock
    }

    static let parameters = StateFixtures.parameters(width: 1280, height: 720)

    /// Records each job's predicted finish (the state's own) when it passes 10% and 50% of its
    /// source seconds.
    mutating func predict() {
        let total = lengths.map { $0.reduce(0, +) }
        var refreshed = false
        for j in jobIDs.indices {
            for (k, threshold) in [0.1, 0.5].enumerated() where predicted[j][k] == nil && doneSeconds[j] >= threshold * total[j] {
                if !refreshed {
                    state.refreshPredictions(now: now)
                    refreshed = true
                }
                predicted[j][k] = state.predictedFinish[jobIDs[j]] ?? now
            }
        }
    }

    var freeSlotsExist: Bool { state.nodes.values.contains { $0.inFlight.count < $0.slots } }

    mutating func run(policy: SchedulerSimulation.Policy) -> SchedulerSimulation.Outcome {
        while finish.contains(where: { $0 == nil }) {
            guard var next = tasks.values.map(\.end).min() else { break }  // nothing runs and nothing starts: no fleet
            if freeSlotsExist { next = min(next, now + scenario.tickSeconds) }
            now = next
            complete()
            heartbeats()
            apply(state.tick(now: now))
            if case .farm = policy { predict() }
        }
        let makespan = finish.compactMap { $0 }.max() ?? .infinity
        let work = lengths.joined().reduce(0, +)
        let capacity = scenario.speeds.reduce(0, +) * Double(scenario.slotsPerNode)
        let lowerBound = max(work / capacity, (lengths.joined().max() ?? 0) / (scenario.speeds.max() ?? 1))
        func etaError(_ k: Int) -> Double? {
            let errors = jobIDs.indices.compactMap { j -> Double? in
                guard let p = predicted[j][k], let f = finish[j], f > 0 else { return nil }
                return abs(p - f) / f * 100
            }
            return errors.isEmpty ? nil : errors.reduce(0, +) / Double(errors.count)
        }
        return SchedulerSimulation.Outcome(
            makespan: makespan, lowerBound: lowerBound, ratio: makespan / lowerBound,
            segments: lengths.reduce(0) { $0 + $1.count }, duplicates: duplicates, duplicateWins: duplicateWins,
            wastedSeconds: wasted, jobFinish: finish.map { $0 ?? .infinity }, segmentsByNode: finishedByNode,
            etaError10Percent: etaError(0),
            etaError50Percent: etaError(1))
    }
}
