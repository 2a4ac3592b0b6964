/// A render node as the scheduler sees it: its slots, how many are busy, and how fast it encodes.
public struct SchedulerNode: Sendable, Hashable {
    /// The coordinator's id for the node (its session).
    public var id: UInt64
    /// The node's name, for logs and for keying measured speeds.
    public var name: String
    /// Segments the node encodes at once.
    public var slots: Int
    /// Slots running a task now, duplicates included.
    public var busySlots: Int
    /// Measured speed per codec: source seconds encoded per wall-clock second, per slot. A codec that
    /// is missing (or not a positive number) counts as unknown: the fleet's median for that codec is
    /// used, or 1.0 when no node of the fleet has a measurement for it.
    public var speeds: [String: Double]
    /// A draining node finishes what it runs and takes nothing new.
    public var draining: Bool

    /// A node with speeds per codec.
    public init(
        id: UInt64, name: String = "", slots: Int, busySlots: Int = 0, speeds: [String: Double] = [:],
        draining: Bool = false
    ) {
        self.id = id
        self.name = name
        self.slots = slots
        self.busySlots = busySlots
        self.speeds = speeds
        self.draining = draining
    }

    /// A node with one speed for the default codec `""` (nil: unknown).
    public init(
        id: UInt64, name: String = "", slots: Int, busySlots: Int = 0, speed: Double?, draining: Bool = false
    ) {
        self.init(
            id: id, name: name, slots: slots, busySlots: busySlots, speeds: speed.map { ["": $0] } ?? [:],
            draining: draining)
    }

    /// Slots that can take a task now.
    public var freeSlots: Int { max(slots - busySlots, 0) }
}

/// A segment waiting for a slot.
public struct SchedulerSegment: Sendable, Hashable {
    /// The job the segment belongs to.
    public var jobID: String
    /// The segment's index in its job.
    public var index: Int
    /// The segment's source duration in seconds.
    public var seconds: Double
    /// The key of the job's codec in `SchedulerNode.speeds` (for example `EncodeSettings.codec`).
    public var codec: String

    /// A segment of `seconds` source seconds, encoded with `codec`.
    public init(jobID: String, index: Int, seconds: Double, codec: String = "") {
        self.jobID = jobID
        self.index = index
        self.seconds = seconds
        self.codec = codec
    }
}

/// A task running on a node: a segment leased to one slot.
public struct SchedulerRunning: Sendable, Hashable {
    /// The coordinator's task id.
    public var taskID: UInt64
    /// The job of the segment.
    public var jobID: String
    /// The segment's index in its job.
    public var index: Int
    /// The node (`SchedulerNode.id`) running it.
    public var node: UInt64
    /// When the task was leased, on the clock of `now`.
    public var startedAt: Double
    /// The segment's source duration in seconds.
    public var seconds: Double
    /// The key of the job's codec in `SchedulerNode.speeds`.
    public var codec: String
    /// The fraction of the segment's frames done (heartbeat `framesDone / expectedFrames`), if known.
    public var progress: Double?
    /// When `progress` was reported, on the clock of `startedAt` (nil: now).
    public var progressTime: Double?
    /// This task is the second copy of a segment that another task runs too.
    public var isDuplicate: Bool
    /// The segment has had a duplicate already (even one that failed or lost): it gets no other.
    public var hasBeenDuplicated: Bool

    /// A running task.
    public init(
        taskID: UInt64, jobID: String, index: Int, node: UInt64, startedAt: Double, seconds: Double,
        codec: String = "", progress: Double? = nil, progressTime: Double? = nil, isDuplicate: Bool = false,
        hasBeenDuplicated: Bool = false
    ) {
        self.taskID = taskID
        self.jobID = jobID
        self.index = index
        self.node = node
        self.startedAt = startedAt
        self.seconds = seconds
        self.codec = codec
        self.progress = progress
        self.progressTime = progressTime
        self.isDuplicate = isDuplicate
        self.hasBeenDuplicated = hasBeenDuplicated
    }
}

/// What the coordinator should do now.
public enum SchedulingDecision: Sendable, Hashable {
    /// Lease a ready segment to a free slot of `node`.
    case assign(jobID: String, index: Int, node: UInt64)
    /// Run a straggling segment a second time on a free slot of `node`; keep whichever result
    /// arrives first and cancel the other task.
    case duplicate(jobID: String, index: Int, node: UInt64)

    /// The job of the segment.
    public var jobID: String {
        switch self {
        case .assign(let jobID, _, _), .duplicate(let jobID, _, _): jobID
        }
    }

    /// The segment's index.
    public var index: Int {
        switch self {
        case .assign(_, let index, _), .duplicate(_, let index, _): index
        }
    }

    /// The node whose free slot runs it.
    public var node: UInt64 {
        switch self {
        case .assign(_, _, let node), .duplicate(_, _, let node): node
        }
    }
}

/// Which slot gets which segment, on nodes of unequal speed.
///
/// At every call the policy plans all the remaining work, job by job in submission order, on every
/// slot of the nodes that take work (free now, or busy until its task's expected end):
///
/// 1. Each of the job's segments, longest first, goes to the slot where it would finish earliest;
///    then a local search moves or swaps segments away from the slot that ends last while that
///    ends the job earlier (see `SchedulerFleet.plan`). Faster slots get more segments, and the job's
///    last segments go to slots that finish them soonest.
/// 2. A free slot leases the longest segment the plan gives it. A free slot that the plan leaves
///    empty stays idle: a faster slot freeing up soon finishes that work earlier.
/// 3. Later jobs are planned on what earlier jobs leave: a slot idle in one job's tail takes the
///    next job's segments, so one job's tail never idles the fleet while another has ready work.
///
/// A job with nothing ready but a late task (see `isLate`) may have it run a second time: on the
/// slot that would finish it first, if that beats the original's expected end by `duplicateMargin`
/// of the copy's duration, and only when that slot is free now. A segment gets one duplicate.
///
/// The policy is a pure value: no clock, no state. The coordinator passes `now` (seconds, any
/// origin) and its tasks' times on the same clock, and calls `decide` when a slot frees, a segment
/// becomes ready or a node joins, and about every second while a slot is idle (lateness grows
/// with time).
public struct SchedulingPolicy: Sendable, Hashable {
    /// How much earlier (as a fraction of the duplicate's own expected duration) a duplicate must be
    /// expected to finish than the original before it is started.
    public var duplicateMargin: Double
    /// Whether stragglers may be run twice.
    public var allowsDuplicates: Bool
    /// Start duplicates only when no job has a ready segment. By default a job's straggler may be
    /// duplicated once that job has nothing ready, ahead of younger jobs' ready segments, as the
    /// job would be served before them.
    public var duplicatesWaitForAllJobs: Bool
    /// How much a task's actual duration may differ from its expected one, as a fraction. The plan
    /// keeps that much of each slot's planned work (summed in quadrature) free before the job's end,
    /// so the last segments go to slots where a miss costs little: fast ones, whose segments are
    /// short. 0 plans on the expected durations alone.
    public var durationUncertainty: Double

    /// A policy.
    ///
    /// - Parameters:
    ///   - duplicateMargin: 0.2: a duplicate's expected duration plus 20% must still end before the
    ///     original is expected to.
    ///   - allowsDuplicates: whether stragglers may be run twice.
    ///   - duplicatesWaitForAllJobs: see `duplicatesWaitForAllJobs`.
    ///   - durationUncertainty: see `durationUncertainty`.
    public init(
        duplicateMargin: Double = 0.2, allowsDuplicates: Bool = true, duplicatesWaitForAllJobs: Bool = false,
        durationUncertainty: Double = 0.1
    ) {
        self.duplicateMargin = duplicateMargin
        self.allowsDuplicates = allowsDuplicates
        self.duplicatesWaitForAllJobs = duplicatesWaitForAllJobs
        self.durationUncertainty = durationUncertainty
    }

    /// The leases to make now.
    ///
    /// - Parameters:
    ///   - nodes: every connected node; draining nodes get nothing.
    ///   - ready: the segments waiting for a slot, in priority order (oldest job first, then index).
    ///   - running: every running task, duplicates included.
    ///   - now: the current time, on the clock of `SchedulerRunning.startedAt`.
    /// - Returns: at most one decision per free slot, never a slot of a draining node, never the same
    ///   segment twice; duplicates only of jobs with nothing in `ready` (with
    ///   `duplicatesWaitForAllJobs`, only when `ready` is empty), never on the original's node.
    public func decide(
        nodes: [SchedulerNode], ready: [SchedulerSegment], running: [SchedulerRunning], now: Double
    ) -> [SchedulingDecision] {
        let model = SchedulerFleet(nodes: nodes, running: running, codecs: ready.map(\.codec), now: now)
        guard model.slots.contains(where: \.freeNow) else { return [] }
        return schedule(model: model, ready: ready, running: running, decide: true).decisions
    }

    /// When each job is expected to finish, on the clock of `now`, if the fleet keeps its measured
    /// speeds and this policy schedules the rest.
    ///
    /// The prediction is the plan `decide` makes, followed to its end: the same jobs in the same
    /// order on the same slots with the same expected durations, late segments ending with the
    /// duplicate the plan gives them when that one ends first. Jobs with segments left and no node
    /// to run them get `.infinity`.
    ///
    /// - Parameters:
    ///   - nodes: every connected node.
    ///   - remaining: every segment that is neither done nor running, ready or still being split,
    ///     in priority order.
    ///   - running: every running task.
    ///   - now: the current time.
    /// - Returns: for each job of `remaining` and `running`, its expected finish time.
    public func expectedFinish(
        nodes: [SchedulerNode], remaining: [SchedulerSegment], running: [SchedulerRunning], now: Double
    ) -> [String: Double] {
        let model = SchedulerFleet(nodes: nodes, running: running, codecs: remaining.map(\.codec), now: now)
        return schedule(model: model, ready: remaining, running: running, decide: false).finish
    }

    /// The expected end of a running task that runs at `speed`, seen at `now`.
    ///
    /// From its progress once it has run a quarter of its expected duration (the rate so far,
    /// extrapolated); without progress, its start plus its expected duration, and once it is late,
    /// the overrun so far taken as the time still needed (a slightly late task is expected soon, a
    /// badly late one later and later). Never before `now`.
    public static func estimatedFinish(of task: SchedulerRunning, speed: Double, now: Double) -> Double {
        let expected = task.seconds / speed
        let elapsed = max(now - task.startedAt, 0)
        if let progress = task.progress, progress > 0 {
            if progress >= 1 { return now }
            let measured = max(min(task.progressTime ?? now, now) - task.startedAt, 0)
            if measured >= expected / 4 || elapsed > expected {
                return max(now, task.startedAt + measured / progress)
            }
        }
        if elapsed <= expected { return task.startedAt + expected }
        return now + (elapsed - expected)
    }

    /// Whether a running task is late: it has run longer than expected, or its progress shows that it
    /// will end more than `duplicateMargin` of its expected duration after it was expected to.
    public func isLate(_ task: SchedulerRunning, speed: Double, now: Double) -> Bool {
        let expected = task.seconds / speed
        if now - task.startedAt > expected { return true }
        return Self.estimatedFinish(of: task, speed: speed, now: now) > task.startedAt + expected * (1 + duplicateMargin)
    }

    /// The speed used for `node` and `codec`: its measurement, else the median of the fleet's
    /// measurements for the codec, else 1.0.
    public static func effectiveSpeed(of node: SchedulerNode, codec: String, fleet: [SchedulerNode]) -> Double {
        if let speed = node.speeds[codec], speed > 0, speed.isFinite { return speed }
        return fleetMedian(codec: codec, fleet: fleet)
    }

    /// The median of the fleet's measured speeds for `codec`, or 1.0 when none is known.
    public static func fleetMedian(codec: String, fleet: [SchedulerNode]) -> Double {
        let known = fleet.compactMap { node -> Double? in
            guard let s = node.speeds[codec], s > 0, s.isFinite else { return nil }
            return s
        }.sorted()
        guard !known.isEmpty else { return 1.0 }
        let mid = known.count / 2
        return known.count % 2 == 1 ? known[mid] : (known[mid - 1] + known[mid]) / 2
    }

    // MARK: - Internals

    /// The segments grouped by job, jobs in order of first appearance.
    static func jobsInOrder(_ segments: [SchedulerSegment]) -> [[SchedulerSegment]] {
        var rank: [String: Int] = [:]
        var jobs: [[SchedulerSegment]] = []
        var last = -1
        for segment in segments {
            // Segments of a job usually come together: compare before hashing.
            if last >= 0, jobs[last][0].jobID == segment.jobID {
                jobs[last].append(segment)
            } else if let r = rank[segment.jobID] {
                jobs[r].append(segment)
                last = r
            } else {
                rank[segment.jobID] = jobs.count
                last = jobs.count
                jobs.append([segment])
            }
        }
        return jobs
    }

    /// Plans every job on the fleet, in priority order: first the jobs that only have running
    /// tasks left (they are in their tails, and older than any job with ready segments, which
    /// would have been served first), by their oldest task; then the jobs of `ready` in its order.
    /// For each job its ready segments (see `SchedulerFleet.plan`), then second copies of its late
    /// tasks, each on the slot that would finish it first if that beats the original by the margin.
    ///
    /// With `decide`, a free slot's first planned segment is leased to it, and a planned duplicate
    /// on a free slot is started when its job has nothing ready (and, with
    /// `duplicatesWaitForAllJobs`, no job has); planning stops once every free slot is decided.
    func schedule(
        model: SchedulerFleet, ready: [SchedulerSegment], running: [SchedulerRunning], decide: Bool
    ) -> (decisions: [SchedulingDecision], finish: [String: Double]) {
        let now = model.now
        var slots = model.slots
        var uncommitted = slots.reduce(0) { $0 + ($1.freeNow ? 1 : 0) }
        var decisions: [SchedulingDecision] = []
        var finish: [String: Double] = [:]

        // Running tasks by job; which segments may still be duplicated.
        var copies: [SchedulerSegmentKey: Int] = [:]
        var barred: Set<SchedulerSegmentKey> = []
        var tasksOf: [String: [SchedulerRunning]] = [:]
        for task in running {
            let key = SchedulerSegmentKey(task.jobID, task.index)
            copies[key, default: 0] += 1
            if task.isDuplicate || task.hasBeenDuplicated { barred.insert(key) }
            tasksOf[task.jobID, default: []].append(task)
        }
        let groups = Self.jobsInOrder(ready)
        let readyJobs = Set(groups.map { $0[0].jobID })
        var tailJobs: [(oldest: Double, id: String)] = []
        for (id, tasks) in tasksOf where !readyJobs.contains(id) {
            tailJobs.append((tasks.map(\.startedAt).min() ?? now, id))
        }
        tailJobs.sort { $0.oldest != $1.oldest ? $0.oldest < $1.oldest : $0.id < $1.id }
        var order: [(id: String, segments: [SchedulerSegment])] = tailJobs.map { ($0.id, []) }
        for group in groups { order.append((group[0].jobID, group)) }

        for (id, segments) in order {
            // Late tasks are candidates for a duplicate; the others bound the job's end from below.
            var floor = now
            var late: [(task: SchedulerRunning, finish: Double)] = []
            for task in tasksOf[id] ?? [] {
                let key = SchedulerSegmentKey(task.jobID, task.index)
                let end = model.segmentFinish[key] ?? now
                if allowsDuplicates, copies[key] == 1, !barred.contains(key), let n = model.index[task.node],
                    isLate(task, speed: model.speed(codec: task.codec, node: n), now: now)
                {
                    late.append((task, end))
                } else {
                    floor = max(floor, end)
                }
            }
            var jobEnd = floor
            if !segments.isEmpty {
                if slots.isEmpty {
                    jobEnd = .infinity
                } else {
                    let plan = model.plan(
                        segments, floor: floor, uncertainty: durationUncertainty, slots: &slots, quick: decide)
                    jobEnd = max(jobEnd, plan.finish)
                    if decide {
                        for s in slots.indices where slots[s].freeNow && !slots[s].committed && !plan.items[s].isEmpty {
                            // The slot starts the longest of its planned segments (the lowest position
                            // in the longest-first order): short ones stay for the end, where they
                            // absorb the differences between expected and actual durations.
                            let first = plan.segments[plan.items[s].min()!]
                            slots[s].committed = true
                            uncommitted -= 1
                            decisions.append(
                                .assign(jobID: first.jobID, index: first.index, node: model.nodes[slots[s].node].id))
                        }
                    }
                }
            }
            // The latest original first: it holds the job back the most.
            late.sort { $0.finish != $1.finish ? $0.finish > $1.finish : $0.task.taskID < $1.task.taskID }
            let mayStart = segments.isEmpty && (ready.isEmpty || !duplicatesWaitForAllJobs)
            for (task, original) in late {
                var best: (slot: Int, end: Double, duration: Double)?
                for j in slots.indices where model.nodes[slots[j].node].id != task.node {
                    let duration = task.seconds / model.speed(codec: task.codec, node: slots[j].node)
                    let end = slots[j].available + duration
                    if best == nil || end < best!.end { best = (j, end, duration) }
                }
                guard let best, best.end + best.duration * duplicateMargin < original else {
                    jobEnd = max(jobEnd, original)
                    continue
                }
                jobEnd = max(jobEnd, best.end)
                slots[best.slot].available = best.end
                if decide, mayStart, slots[best.slot].freeNow, !slots[best.slot].committed {
                    slots[best.slot].committed = true
                    uncommitted -= 1
                    decisions.append(
                        .duplicate(jobID: task.jobID, index: task.index, node: model.nodes[slots[best.slot].node].id))
                }
            }
            finish[id] = jobEnd
            // Later jobs cannot change what the free slots get.
            if decide, uncommitted == 0 { break }
        }
        return (decisions, finish)
    }
}

/// A job's segment, as a dictionary key.
struct SchedulerSegmentKey: Hashable {
    var jobID: String
    var index: Int
    init(_ jobID: String, _ index: Int) {
        self.jobID = jobID
        self.index = index
    }
}

/// One slot in a plan: when it can start its next segment.
struct SchedulerPlanSlot {
    /// Index into `SchedulerFleet.nodes`.
    var node: Int
    var available: Double
    /// Free at `now`: a lease decided for it starts now.
    var freeNow: Bool
    var committed = false
}

/// The fleet at one instant: effective speeds per codec, the slots of the nodes that take work and
/// when each is free, the expected end of each running segment.
struct SchedulerFleet {
    let nodes: [SchedulerNode]
    let now: Double
    let index: [UInt64: Int]
    let slots: [SchedulerPlanSlot]
    /// Expected end of each running segment (the earlier copy's when it runs twice).
    let segmentFinish: [SchedulerSegmentKey: Double]
    private var speedTable: [String: [Double]]

    init(nodes: [SchedulerNode], running: [SchedulerRunning], codecs: [String], now: Double) {
        self.nodes = nodes
        self.now = now
        var index: [UInt64: Int] = [:]
        for (i, node) in nodes.enumerated() { index[node.id] = i }
        self.index = index
        var table: [String: [Double]] = [:]
        for codec in Set(codecs).union(running.map(\.codec)) {
            let median = SchedulingPolicy.fleetMedian(codec: codec, fleet: nodes)
            table[codec] = nodes.map { node in
                if let s = node.speeds[codec], s > 0, s.isFinite { return s }
                return median
            }
        }
        speedTable = table

        var segmentFinish: [SchedulerSegmentKey: Double] = [:]
        for task in running {
            let speed = index[task.node].map { table[task.codec]![$0] } ?? SchedulingPolicy.fleetMedian(codec: task.codec, fleet: nodes)
            let end = SchedulingPolicy.estimatedFinish(of: task, speed: speed, now: now)
            let key = SchedulerSegmentKey(task.jobID, task.index)
            segmentFinish[key] = min(segmentFinish[key] ?? .infinity, end)
        }
        self.segmentFinish = segmentFinish

        var ends: [UInt64: [Double]] = [:]
        for task in running {
            // A slot running one copy of a segment run twice frees when either copy ends (the
            // other is cancelled then).
            ends[task.node, default: []].append(max(segmentFinish[SchedulerSegmentKey(task.jobID, task.index)] ?? now, now))
        }
        var slots: [SchedulerPlanSlot] = []
        for (i, node) in nodes.enumerated() where !node.draining && node.slots > 0 {
            let known = (ends[node.id] ?? []).sorted(by: >)
            let busy = min(node.slots, max(node.busySlots, known.count))
            // More tasks than slots cannot happen; if it does, the slots free with the latest ones.
            let busyEnds = Array(known.prefix(busy))
            for k in 0..<node.slots {
                if k < busy {
                    slots.append(SchedulerPlanSlot(node: i, available: k < busyEnds.count ? busyEnds[k] : now, freeNow: false))
                } else {
                    slots.append(SchedulerPlanSlot(node: i, available: now, freeNow: true))
                }
            }
        }
        self.slots = slots
    }

    /// The effective speed of node `node` (an index into `nodes`) for `codec`.
    func speed(codec: String, node: Int) -> Double {
        if let row = speedTable[codec] { return row[node] }
        return SchedulingPolicy.effectiveSpeed(of: nodes[node], codec: codec, fleet: nodes)
    }

    /// Plans one job's segments (longest first) on `slots` and moves each slot's `available` to
    /// the end of its share.
    ///
    /// First each segment goes where it would finish earliest; then, while that lowers the job's
    /// end, a segment of the slot that ends last moves to another slot or swaps with a shorter
    /// segment there. Earliest-finish placement alone ends about 10% after the fluid bound when
    /// segments are long next to the fleet's share of the work (about four segments per slot); the
    /// local search brings it within about 1% (see `SchedulerSimulation`).
    ///
    /// A slot's end, as the plan compares them, is its expected end plus `uncertainty` times the
    /// root of the summed squares of its planned durations (its current task's rest included).
    func plan(
        _ segments: [SchedulerSegment], floor: Double, uncertainty: Double, slots: inout [SchedulerPlanSlot],
        quick: Bool = false
    ) -> SchedulerJobPlan {
        let job = segments.sorted { $0.seconds != $1.seconds ? $0.seconds > $1.seconds : $0.index < $1.index }
        let count = slots.count
        var items = Array(repeating: [Int](), count: count)
        guard count > 0, !job.isEmpty else { return SchedulerJobPlan(segments: job, items: items, finish: floor) }
        let row = speedTable[job[0].codec] ?? nodes.map { _ in 1.0 }
        let speed = slots.map { row[$0.node] }
        let base = slots.map(\.available)
        let u = uncertainty
        let w = job.map(\.seconds)
        // Per slot: planned source seconds, and the summed squares of planned durations (the
        // current task's rest included).
        var load = Array(repeating: 0.0, count: count)
        var squares = base.map { ($0 - now) * ($0 - now) }
        // (Plain loops and a static helper: this runs at every event, also in debug builds.)
        let end = Self.slotEnd
        // Far from the job's end, only the free slots' first segments are wanted, and the first
        // placements give them: the search that balances the job's end comes later.
        let quick = quick && job.count > Self.quickPlanFactor * count
        var waiting = quick ? slots.reduce(0) { $0 + ($1.freeNow && !$1.committed ? 1 : 0) } : -1

        for k in 0..<job.count {
            let best = Self.earliestEnd(of: w[k], base: base, load: load, speed: speed, squares: squares, uncertainty: u)
            let d = w[k] / speed[best]
            load[best] += w[k]
            squares[best] += d * d
            if quick, items[best].isEmpty, slots[best].freeNow, !slots[best].committed {
                waiting -= 1
            }
            items[best].append(k)
            if waiting == 0 { return SchedulerJobPlan(segments: job, items: items, finish: .infinity) }
        }

        // Ends of the slots that have a share of the job (-infinity: none).
        var ends = Array(repeating: -Double.infinity, count: count)
        for j in 0..<count where !items[j].isEmpty {
            ends[j] = end(base[j], load[j], speed[j], u, squares[j])
        }
        let epsilon = 1e-9
        var iterations = 0
        while !quick, iterations < 4 * job.count + 100 {
            iterations += 1
            var m = 0
            for j in 1..<count where ends[j] > ends[m] { m = j }
            let top = ends[m]
            if top <= floor + epsilon { break }
            // The best move or swap: the one that leaves the lower of the two slots' ends.
            var bestMax = top - epsilon
            var moveAt = -1
            var moveTo = -1
            var swapWith = -1
            let mine = items[m]
            for a in 0..<mine.count {
                let k = mine[a]
                let dm = w[k] / speed[m]
                let left =
                    mine.count == 1
                    ? -Double.infinity : end(base[m], load[m] - w[k], speed[m], u, squares[m] - dm * dm)
                for j in 0..<count where j != m && ends[j] < bestMax {
                    // (A slot that already ends too late cannot take anything.)
                    let dj = w[k] / speed[j]
                    let moved = max(end(base[j], load[j] + w[k], speed[j], u, squares[j] + dj * dj), left)
                    if moved < bestMax {
                        bestMax = moved
                        moveAt = a
                        moveTo = j
                        swapWith = -1
                    }
                    let theirs = items[j]
                    for b in 0..<theirs.count where w[theirs[b]] < w[k] {
                        let l = theirs[b]
                        let lj = w[l] / speed[j]
                        let lm = w[l] / speed[m]
                        let there = end(base[j], load[j] - w[l] + w[k], speed[j], u, squares[j] + dj * dj - lj * lj)
                        let here = end(base[m], load[m] - w[k] + w[l], speed[m], u, squares[m] + lm * lm - dm * dm)
                        let swapped = max(there, here)
                        if swapped < bestMax {
                            bestMax = swapped
                            moveAt = a
                            moveTo = j
                            swapWith = b
                        }
                    }
                }
            }
            guard moveAt >= 0 else { break }
            let k = items[m].remove(at: moveAt)
            load[m] -= w[k]
            load[moveTo] += w[k]
            if swapWith >= 0 {
                let l = items[moveTo].remove(at: swapWith)
                load[moveTo] -= w[l]
                load[m] += w[l]
                items[m].append(l)
            }
            items[moveTo].append(k)
            for j in [m, moveTo] {
                // Recomputed, not updated, so rounding does not pile up.
                var sum = (base[j] - now) * (base[j] - now)
                for i in items[j] { sum += (w[i] / speed[j]) * (w[i] / speed[j]) }
                squares[j] = sum
                ends[j] = items[j].isEmpty ? -Double.infinity : end(base[j], load[j], speed[j], u, sum)
            }
        }

        var finish = floor
        for j in 0..<count where !items[j].isEmpty {
            let expected = base[j] + load[j] / speed[j]
            slots[j].available = expected
            finish = max(finish, expected)
        }
        return SchedulerJobPlan(segments: job, items: items, finish: finish)
    }

    /// The slot where `seconds` of source would end first (the faster one on a tie).
    static func earliestEnd(
        of seconds: Double, base: [Double], load: [Double], speed: [Double], squares: [Double], uncertainty u: Double
    ) -> Int {
        // Buffer pointers: this loop runs slots × segments times per plan, and debug builds would
        // retain and release the arrays at every subscript.
        base.withUnsafeBufferPointer { base in
            load.withUnsafeBufferPointer { load in
                speed.withUnsafeBufferPointer { speed in
                    squares.withUnsafeBufferPointer { squares in
                        var best = 0
                        var bestEnd = Double.infinity
                        for j in 0..<base.count {
                            let d = seconds / speed[j]
                            let e = base[j] + (load[j] + seconds) / speed[j] + u * (squares[j] + d * d).squareRoot()
                            if e < bestEnd || (e == bestEnd && speed[j] > speed[best]) {
                                best = j
                                bestEnd = e
                            }
                        }
                        return best
                    }
                }
            }
        }
    }

    /// A job with more segments than this many per slot gets a quick plan in `decide`.
    static let quickPlanFactor = 6

    /// A slot's end as the plan compares them: start, plus planned work at the slot's speed, plus
    /// `uncertainty` times the root of the summed squared durations.
    static func slotEnd(
        base: Double, load: Double, speed: Double, uncertainty: Double, squares: Double
    ) -> Double {
        base + load / speed + uncertainty * squares.squareRoot()
    }
}

/// One job's share of each slot (indices into the job's segments) and when the job ends.
struct SchedulerJobPlan {
    /// The job's segments, longest first.
    var segments: [SchedulerSegment]
    /// Per slot, indices into `segments`.
    var items: [[Int]]
    var finish: Double
}

/// Measured speeds of the fleet, per node and codec: source seconds encoded per wall-clock second
/// of a slot's lease, smoothed as an exponential moving average so one slow segment does not
/// condemn a node and a changed node is learnt within a few segments.
public struct SpeedEstimates: Sendable, Hashable {
    /// Weight of a new measurement (0 < smoothing ≤ 1).
    public var smoothing: Double
    private var table: [String: [String: Double]] = [:]

    /// Empty estimates; `smoothing` is the weight of each new measurement.
    public init(smoothing: Double = 0.3) {
        self.smoothing = smoothing
    }

    /// Sets a node's speed for a codec from a calibration run, replacing what was known.
    public mutating func calibrate(node: String, codec: String, speed: Double) {
        guard speed > 0, speed.isFinite else { return }
        table[node, default: [:]][codec] = speed
    }

    /// Folds in one finished segment: `sourceSeconds` of video in `wallSeconds` of the slot's time
    /// (lease to result). The first measurement of a node and codec is taken as it is.
    public mutating func record(node: String, codec: String, sourceSeconds: Double, wallSeconds: Double) {
        guard sourceSeconds > 0, wallSeconds > 0 else { return }
        let measured = sourceSeconds / wallSeconds
        guard measured.isFinite else { return }
        if let old = table[node]?[codec] {
            table[node]![codec] = smoothing * measured + (1 - smoothing) * old
        } else {
            table[node, default: [:]][codec] = measured
        }
    }

    /// A node's speeds by codec, for `SchedulerNode.speeds`.
    public func speeds(node: String) -> [String: Double] {
        table[node] ?? [:]
    }

    /// Forgets a node (it was replaced by different hardware under the same name).
    public mutating func forget(node: String) {
        table[node] = nil
    }
}
