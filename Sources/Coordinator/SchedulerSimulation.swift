/// A discrete-event simulation of a fleet encoding jobs, driven by the real `SchedulingPolicy` (or by
/// the naive policy the coordinator used before it) the way the coordinator drives it: `decide` at
/// every completion and every tick, speeds measured from finished segments and fed back as moving
/// averages, the losing copy of a duplicated segment cancelled when the other one finishes.
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
        /// The start-up calibration misjudges each node's speed by up to this fraction.
        public var calibrationError: Double
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
            stragglerProbability: Double = 0, stragglerFactor: Double = 3, calibrationError: Double = 0.05,
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
            self.calibrationError = calibrationError
            self.speedSmoothing = speedSmoothing
            self.tickSeconds = tickSeconds
            self.seed = seed
        }

        /// The same scenario with estimates that are exactly right: no noise, no stragglers, a
        /// perfect calibration.
        public var exact: Scenario {
            var s = self
            s.name += "-exact"
            s.durationNoise = 0
            s.stragglerProbability = 0
            s.calibrationError = 0
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
    /// node, one 2-hour job and three submitted at once, task durations ±10% off and calibration
    /// ±5% off; then a few of them exact, with stragglers, and with a finer tail.
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
        var world = World(scenario: scenario)
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

/// The simulated fleet and jobs while a run goes on.
private struct World {
    struct Task {
        var id: UInt64
        var job: Int
        var index: Int
        var node: Int
        var start: Double
        var end: Double
        var isDuplicate: Bool
    }

    let scenario: Scenario
    let names: [String]
    let jobIDs: [String]
    let lengths: [[Double]]
    var estimates: SpeedEstimates
    var busy: [Int]
    var ready: [SchedulerSegment]
    /// The job (index into `jobIDs`) of each element of `ready`.
    var readyJob: [Int]
    var tasks: [Task] = []
    var done: [[Bool]]
    var copies: [[Int]]
    var duplicated: [[Bool]]
    var doneSeconds: [Double]
    var finish: [Double?]
    var predicted: [[Double?]]
    var nextTaskID: UInt64 = 1
    var duplicates = 0
    var duplicateWins = 0
    var finishedByNode: [Int]
    var wasted = 0.0
    var now = 0.0

    typealias Scenario = SchedulerSimulation.Scenario

    init(scenario: Scenario) {
        self.scenario = scenario
        let n = scenario.speeds.count
        names = (0..<n).map { "node-\($0 + 1)" }
        jobIDs = (0..<scenario.jobs).map { "job-\($0 + 1)" }
        let seconds = scenario.videoHours * 3600
        lengths = (0..<scenario.jobs).map { j in
            SchedulerSimulation.segmentLengths(
                durationSeconds: seconds, totalSlots: n * scenario.slotsPerNode,
                slotSpeeds: scenario.speeds.flatMap { Array(repeating: $0, count: scenario.slotsPerNode) },
                variation: scenario.segmentVariation, tailSplit: scenario.tailSplit,
                seed: scenario.seed &* 7919 &+ UInt64(j))
        }
        var rng = SplitMix64(seed: scenario.seed ^ 0xCA1B)
        estimates = SpeedEstimates(smoothing: scenario.speedSmoothing)
        for (i, speed) in scenario.speeds.enumerated() {
            let e = scenario.calibrationError
            let error = e > 0 ? Double.random(in: -e...e, using: &rng) : 0
            estimates.calibrate(node: names[i], codec: "", speed: speed * (1 + error))
        }
        busy = Array(repeating: 0, count: n)
        finishedByNode = Array(repeating: 0, count: n)
        ready = lengths.enumerated().flatMap { j, segs in
            segs.enumerated().map { SchedulerSegment(jobID: "job-\(j + 1)", index: $0.offset, seconds: $0.element) }
        }
        readyJob = lengths.enumerated().flatMap { j, segs in segs.map { _ in j } }
        done = lengths.map { Array(repeating: false, count: $0.count) }
        copies = lengths.map { Array(repeating: 0, count: $0.count) }
        duplicated = copies.map { $0.map { _ in false } }
        doneSeconds = Array(repeating: 0, count: scenario.jobs)
        finish = Array(repeating: nil, count: scenario.jobs)
        predicted = Array(repeating: [nil, nil], count: scenario.jobs)
    }

    var schedulerNodes: [SchedulerNode] {
        names.indices.map { i in
            SchedulerNode(
                id: UInt64(i + 1), name: names[i], slots: scenario.slotsPerNode, busySlots: busy[i],
                speeds: estimates.speeds(node: names[i]))
        }
    }

    var running: [SchedulerRunning] {
        tasks.map { t in
            // Progress as the last heartbeat (once a second) reported it.
            let reported = (now - t.start).rounded(.down)
            let progress = min(reported / (t.end - t.start), 1)
            return SchedulerRunning(
                taskID: t.id, jobID: jobIDs[t.job], index: t.index, node: UInt64(t.node + 1), startedAt: t.start,
                seconds: lengths[t.job][t.index], progress: progress, progressTime: t.start + reported,
                isDuplicate: t.isDuplicate,
                hasBeenDuplicated: duplicated[t.job][t.index])
        }
    }

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

    mutating func start(job: Int, index: Int, node: Int, isDuplicate: Bool) {
        let duration = actualDuration(job: job, index: index, copy: copies[job][index], node: node)
        tasks.append(
            Task(id: nextTaskID, job: job, index: index, node: node, start: now, end: now + duration, isDuplicate: isDuplicate))
        nextTaskID += 1
        copies[job][index] += 1
        busy[node] += 1
    }

    mutating func apply(_ decisions: [SchedulingDecision]) {
        var taken = false
        for decision in decisions {
            guard let job = jobIDs.firstIndex(of: decision.jobID) else { preconditionFailure("unknown job") }
            let node = Int(decision.node) - 1
            precondition(busy[node] < scenario.slotsPerNode, "decision for a busy slot")
            switch decision {
            case .assign:
                precondition(copies[job][decision.index] == 0 && !done[job][decision.index], "segment leased twice")
                taken = true
                start(job: job, index: decision.index, node: node, isDuplicate: false)
            case .duplicate:
                precondition(!duplicated[job][decision.index], "second duplicate")
                duplicated[job][decision.index] = true
                duplicates += 1
                start(job: job, index: decision.index, node: node, isDuplicate: true)
            }
        }
        if taken {
            // A leased segment has a copy now.
            var kept = 0
            for i in ready.indices where copies[readyJob[i]][ready[i].index] == 0 {
                ready[kept] = ready[i]
                readyJob[kept] = readyJob[i]
                kept += 1
            }
            ready.removeLast(ready.count - kept)
            readyJob.removeLast(readyJob.count - kept)
        }
    }

    /// Finishes every task that ends by `now`, in order of their ends.
    mutating func complete() {
        while let i = tasks.indices.filter({ tasks[$0].end <= now + 1e-9 }).min(by: { (tasks[$0].end, tasks[$0].id) < (tasks[$1].end, tasks[$1].id) }) {
            let task = tasks.remove(at: i)
            busy[task.node] -= 1
            done[task.job][task.index] = true
            finishedByNode[task.node] += 1
            if task.isDuplicate { duplicateWins += 1 }
            let seconds = lengths[task.job][task.index]
            estimates.record(node: names[task.node], codec: "", sourceSeconds: seconds, wallSeconds: task.end - task.start)
            // The other copy, if any, is cancelled now.
            for loser in tasks.filter({ $0.job == task.job && $0.index == task.index }) {
                wasted += task.end - loser.start
                busy[loser.node] -= 1
            }
            tasks.removeAll { $0.job == task.job && $0.index == task.index }
            doneSeconds[task.job] += seconds
            if done[task.job].allSatisfy({ $0 }) { finish[task.job] = task.end }
        }
    }

    /// Records each job's predicted finish when it passes 10% and 50% of its source seconds.
    mutating func predict(_ policy: SchedulingPolicy) {
        let total = lengths.map { $0.reduce(0, +) }
        var forecast: [String: Double]?
        for j in jobIDs.indices {
            for (k, threshold) in [0.1, 0.5].enumerated() where predicted[j][k] == nil && doneSeconds[j] >= threshold * total[j] {
                if forecast == nil {
                    forecast = policy.expectedFinish(nodes: schedulerNodes, remaining: ready, running: running, now: now)
                }
                predicted[j][k] = forecast?[jobIDs[j]] ?? now
            }
        }
    }

    mutating func run(policy: SchedulerSimulation.Policy) -> SchedulerSimulation.Outcome {
        let freeSlotsExist = { (w: World) in w.busy.contains { $0 < w.scenario.slotsPerNode } }
        while finish.contains(where: { $0 == nil }) {
            let decisions: [SchedulingDecision]
            switch policy {
            case .farm(let p): decisions = p.decide(nodes: schedulerNodes, ready: ready, running: running, now: now)
            case .naive: decisions = SchedulerSimulation.naiveDecide(nodes: schedulerNodes, ready: ready)
            }
            apply(decisions)
            guard var next = tasks.map(\.end).min() else { break }  // nothing runs and nothing starts: no fleet
            if case .farm = policy, freeSlotsExist(self) { next = min(next, now + scenario.tickSeconds) }
            now = next
            complete()
            if case .farm(let p) = policy { predict(p) }
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
