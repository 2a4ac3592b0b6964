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
    /// measurements for the codec (1.0 when there are none) capped by the node's ``SchedulerNode/speedCeilings``.
    public static func effectiveSpeed(of node: SchedulerNode, codec: String, fleet: [SchedulerNode]) -> Double {
        unmeasuredSpeed(of: node, codec: codec, median: fleetMedian(codec: codec, fleet: fleet))
    }

    /// `node`'s measured speed for `codec`, else `median` capped by its ceiling for the codec.
    static func unmeasuredSpeed(of node: SchedulerNode, codec: String, median: Double) -> Double {
        if let speed = node.speeds[codec], speed > 0, speed.isFinite { return speed }
        if let ceiling = node.speedCeilings[codec], ceiling > 0, ceiling.isFinite { return min(median, ceiling) }
        return median
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
