internal import FarmHWEncode
internal import Logging
package import FarmMedia
package import FarmProtocol
internal import Foundation

// Leasing: what the scheduling policy starts, duplicates of stragglers, requeues with backoff and
// the failure rules, quarantine.
extension FarmState {
    /// Asks the scheduling policy what to start now (earliest finish by measured speed, tails on the
    /// fastest slots), starts it, and refreshes the jobs' predicted finish times.
    mutating func schedule(now clock: Double) -> [FarmEffect] {
        quarantined = quarantined.filter { $0.value.until > clock }
        var effects: [FarmEffect] = []
        // Decisions use measured speeds and the median alone: a ceiling from a running task's own age would make
        // that task never look late, and stragglers would never be duplicated.
        let fleet = schedulerFleet(now: clock, ceilings: false)
        var ready: [SchedulerSegment] = []
        for id in jobOrder {
            guard let job = jobs[id], job.state == .running, job.settings != nil else { continue }
            let codec = job.request.codec.rawValue
            for segment in job.segments {
                let item = SchedulerSegment(
                    jobID: id, index: segment.plan.index, seconds: job.segmentSeconds[segment.plan.index], codec: codec)
                if segment.phase == .ready, segment.notBefore <= clock { ready.append(item) }
            }
        }
        let running = runningTasks
        guard !fleet.isEmpty else { return effects }
        // A segment goes back to a node it failed on only when no other node could take it: it is
        // offered to the others alone, and the node it avoided gets other segments instead.
        var held: [SchedulerSegment] = []
        for decision in choose(fleet, ready, running, clock) {
            if case .duplicate(let jobID, let index, let session) = decision {
                effects += duplicate(jobID, index, on: session, now: clock)
                continue
            }
            guard case .assign(let jobID, let index, let session) = decision else { continue }
            if let node = nodes[session], avoids(jobID, index, node: node.nodeID),
                let segment = ready.first(where: { $0.jobID == jobID && $0.index == index })
            {
                held.append(segment)
                continue
            }
            effects += assign(jobID, index, to: session, now: clock)
        }
        if !held.isEmpty {
            let busy = { (fleet: [SchedulerNode], nodes: [UInt64: Node]) in
                fleet.map { node in
                    var node = node
                    node.busySlots = nodes[node.id]?.inFlight.count ?? node.slots
                    return node
                }
            }
            for segment in held {
                let avoided = jobs[segment.jobID]?.segments[segment.index].avoidedNodes ?? []
                let others = busy(fleet, nodes).map { node in
                    var node = node
                    if avoided.contains(node.name) { node.draining = true }
                    return node
                }
                for case .assign(let jobID, let index, let session) in choose(others, [segment], running, clock)
                {
                    effects += assign(jobID, index, to: session, now: clock)
                }
            }
            // Slots left free by a held segment take the rest of the queue.
            let rest = ready.filter { segment in
                jobs[segment.jobID]?.segments[segment.index].phase == .ready && !held.contains(segment)
            }
            if !rest.isEmpty {
                for case .assign(let jobID, let index, let session) in choose(busy(fleet, nodes), rest, running, clock)
                where !(nodes[session].map { avoids(jobID, index, node: $0.nodeID) } ?? true) {
                    effects += assign(jobID, index, to: session, now: clock)
                }
            }
        }
        return effects
    }

    /// Refreshes each running job's predicted finish: the policy's forward plan with measured
    /// speeds, followed to its end. It costs a whole plan, so the coordinator does it once a second
    /// (with its tick), not at every decision.
    package mutating func refreshPredictions(now clock: Double) {
        let fleet = schedulerFleet(now: clock)
        var remaining: [SchedulerSegment] = []
        for id in jobOrder {
            guard let job = jobs[id], job.state == .running, job.settings != nil else { continue }
            for segment in job.segments where segment.phase == .pending || segment.phase == .ready {
                remaining.append(
                    SchedulerSegment(
                        jobID: id, index: segment.plan.index, seconds: job.segmentSeconds[segment.plan.index],
                        codec: job.request.codec.rawValue))
            }
        }
        let running = runningTasks
        guard !fleet.isEmpty, !(remaining.isEmpty && running.isEmpty) else { return }
        predictedFinish = policy.expectedFinish(nodes: fleet, remaining: remaining, running: running, now: clock)
    }

    /// The fleet as the policy sees it at `clock`: slots, busy slots, measured speeds, and (with `ceilings`, for
    /// predictions) for speeds not measured yet the ceiling the coordinator's clock sets (a segment of S seconds held
    /// t seconds: slower than S / t). Nothing a node claims about itself goes in.
    func schedulerFleet(now clock: Double, ceilings withCeilings: Bool = true) -> [SchedulerNode] {
        var ceilings: [UInt64: [String: Double]] = [:]
        for task in tasks.values where withCeilings {
            guard let job = jobs[task.jobID], let seconds = job.segmentSeconds[safe: task.segment] else { continue }
            let elapsed = clock - task.startedAt
            guard elapsed > 0, seconds > 0 else { continue }
            let codec = job.request.codec.rawValue
            ceilings[task.session, default: [:]][codec] = min(ceilings[task.session]?[codec] ?? .infinity, seconds / elapsed)
        }
        return nodes.values.sorted(by: { $0.session < $1.session }).map { node in
            var entry = SchedulerNode(
                id: node.session, name: node.nodeID, slots: node.slots, busySlots: node.inFlight.count,
                speeds: speeds.speeds(node: node.nodeID),
                draining: node.draining || quarantined[node.nodeID] != nil || bans[node.nodeID] != nil)
            entry.speedCeilings = ceilings[node.session] ?? [:]
            return entry
        }
    }

    /// Every running task, as the policy sees it.
    var runningTasks: [SchedulerRunning] {
        tasks.values.sorted { $0.taskID < $1.taskID }.compactMap { task -> SchedulerRunning? in
            guard let job = jobs[task.jobID], task.segment < job.segmentSeconds.count else { return nil }
            let expected = job.segments[task.segment].plan.expectedFrames
            return SchedulerRunning(
                taskID: task.taskID, jobID: task.jobID, index: task.segment, node: task.session,
                startedAt: task.startedAt, seconds: job.segmentSeconds[task.segment], codec: job.request.codec.rawValue,
                progress: expected > 0 ? Double(task.framesDone) / Double(expected) : nil,
                progressTime: task.progressTime, isDuplicate: task.isDuplicate,
                hasBeenDuplicated: job.segments[task.segment].duplicated)
        }
    }

    /// The policy's decisions, or those of the replacement the state was given, within the node pools: a job that
    /// requires labels is offered only the nodes that carry them all. Jobs of one label set are decided together,
    /// the labelled ones first (they can run in fewer places), each seeing the slots the ones before took.
    private func choose(
        _ fleet: [SchedulerNode], _ ready: [SchedulerSegment], _ running: [SchedulerRunning], _ now: Double
    ) -> [SchedulingDecision] {
        let decideOnce = { (nodes: [SchedulerNode], ready: [SchedulerSegment]) in
            self.decide?(nodes, ready, running, now) ?? self.policy.decide(nodes: nodes, ready: ready, running: running, now: now)
        }
        let required = { (jobID: String) in self.jobs[jobID]?.request.nodeLabels ?? [] }
        guard ready.contains(where: { !required($0.jobID).isEmpty }) || running.contains(where: { !required($0.jobID).isEmpty })
        else { return decideOnce(fleet, ready) }
        var groups: [[String]: [SchedulerSegment]] = [:]
        for segment in ready { groups[required(segment.jobID), default: []].append(segment) }
        for task in running where groups[required(task.jobID)] == nil { groups[required(task.jobID)] = [] }
        let order = groups.keys.sorted { ($0.count, $0.joined(separator: ",")) > ($1.count, $1.joined(separator: ",")) }
        var taken: [UInt64: Int] = [:]
        var decisions: [SchedulingDecision] = []
        for labels in order {
            let pool = fleet.map { node -> SchedulerNode in
                var node = node
                node.busySlots = min(node.slots, node.busySlots + (taken[node.id] ?? 0))
                if !self.carries(node.id, labels) { node.draining = true }
                return node
            }
            for decision in decideOnce(pool, groups[labels] ?? []) {
                let (jobID, session): (String, UInt64)
                switch decision {
                case .assign(let j, _, let s): (jobID, session) = (j, s)
                case .duplicate(let j, _, let s): (jobID, session) = (j, s)
                }
                // The policy proposes a duplicate of any late task; only one in this pool's jobs counts here.
                guard required(jobID) == labels, self.carries(session, labels) else { continue }
                taken[session, default: 0] += 1
                decisions.append(decision)
            }
        }
        return decisions
    }

    /// Whether the node of `session` carries every label in `labels`.
    func carries(_ session: UInt64, _ labels: [String]) -> Bool {
        labels.isEmpty || (nodes[session].map { node in labels.allSatisfy(node.labels.contains) } ?? false)
    }

    /// How long a lease of this task lasts from now: `leaseTimeFactor` times the encode time the
    /// node's measured speed predicts for the part of the segment still to do (the fleet's median
    /// speed for a node not measured yet, or 1/10 of real time with nothing measured), at least
    /// `minimumLeaseSeconds`.
    func leaseSeconds(_ task: Task, job: Job, remaining: Double = 1) -> Double {
        leaseSeconds(expected: expectedEncodeSeconds(task, job: job), remaining: remaining)
    }

    /// The lease for a task whose whole segment is expected to take `expected` seconds, `remaining` of it to do.
    func leaseSeconds(expected: Double, remaining: Double) -> Double {
        max(rules.minimumLeaseSeconds, rules.leaseTimeFactor * expected * min(max(remaining, 0), 1))
    }

    /// Seconds the task's node is expected to take for its whole segment (see ``leaseSeconds(_:job:remaining:)``).
    func expectedEncodeSeconds(_ task: Task, job: Job) -> Double {
        let seconds = job.segmentSeconds[safe: task.segment] ?? 0
        let codec = job.request.codec.rawValue
        let fleet = nodes.values.map {
            SchedulerNode(id: $0.session, name: $0.nodeID, slots: $0.slots, speeds: speeds.speeds(node: $0.nodeID))
        }
        var speed = 0.1
        if let node = fleet.first(where: { $0.id == task.session }) {
            let measured = SchedulingPolicy.effectiveSpeed(of: node, codec: codec, fleet: fleet)
            if measured.isFinite, measured > 0 { speed = measured }
        }
        return seconds / max(speed, 0.01)
    }

    mutating func assign(_ jobID: String, _ index: Int, to session: UInt64, now: Double) -> [FarmEffect] {
        guard var job = jobs[jobID], var node = nodes[session], let settings = job.settings,
            job.segments[index].phase == .ready, let source = job.segments[index].source
        else { return [] }
        let taskID = nextTask()
        job.segments[index].phase = .leased
        job.segments[index].holder = taskID
        job.segments[index].attempts += 1
        job.segments[index].lastNode = node.nodeID
        jobs[jobID] = job
        node.inFlight.insert(taskID)
        nodes[session] = node
        var task = Task(
            taskID: taskID, jobID: jobID, segment: index, session: session, nodeID: node.nodeID, startedAt: now,
            deadline: now)
        task.deadline = now + leaseSeconds(task, job: job)
        tasks[taskID] = task
        var effects: [FarmEffect] = []
        effects.log(.info, "segment leased", ["job": jobID, "segment": "\(index)", "node": node.nodeID, "task": "\(taskID)"])
        effects.append(
            .persist(.lease(jobID: jobID, index: index, taskID: taskID, nodeID: node.nodeID, expiresIn: task.deadline - now)))
        effects.append(.sendSegment(session: session, makeAssign(taskID, job, index, source: source), path: source.path))
        return effects
    }

    func makeAssign(_ taskID: UInt64, _ job: Job, _ index: Int, source: SourceFile) -> Assign {
        let segment = job.segments[index]
        let plan = segment.plan
        return Assign(
            taskID: taskID, jobID: job.id, segmentIndex: UInt32(clamping: index),
            attempt: UInt32(clamping: segment.attempts), settings: job.settings!, startPTS: plan.startPTS ?? Int64.min,
            endPTS: plan.endPTS, expectedFrames: UInt64(max(plan.expectedFrames, 0)),
            byteLength: UInt64(max(source.bytes, 0)), checksum: source.checksum)
    }

    /// Runs a straggling segment a second time on a free slot of another node (the policy's
    /// decision); whichever copy ends first is kept and the other is cancelled. The job store keeps
    /// one lease, the original's, until a result arrives.
    mutating func duplicate(_ jobID: String, _ index: Int, on session: UInt64, now: Double) -> [FarmEffect] {
        guard var job = jobs[jobID], var node = nodes[session], job.settings != nil,
            job.segments[index].phase == .leased, let original = job.segments[index].holder,
            let source = job.segments[index].source, let running = tasks[original], running.session != session,
            !job.segments[index].duplicated, !job.segments[index].avoidedNodes.contains(node.nodeID)
        else { return [] }
        let taskID = nextTask()
        job.segments[index].duplicated = true
        job.segments[index].attempts += 1
        jobs[jobID] = job
        node.inFlight.insert(taskID)
        nodes[session] = node
        var task = Task(
            taskID: taskID, jobID: jobID, segment: index, session: session, nodeID: node.nodeID, isDuplicate: true,
            startedAt: now, deadline: now)
        task.deadline = now + leaseSeconds(task, job: job)
        tasks[taskID] = task
        var effects: [FarmEffect] = []
        effects.log(
            .info, "segment duplicated",
            ["job": jobID, "segment": "\(index)", "node": node.nodeID, "task": "\(taskID)", "straggler": running.nodeID])
        effects.append(.sendSegment(session: session, makeAssign(taskID, job, index, source: source), path: source.path))
        return effects
    }

    /// The other running copies of a task's segment.
    func otherCopies(of task: Task) -> [Task] {
        tasks.values.filter { $0.jobID == task.jobID && $0.segment == task.segment && $0.taskID != task.taskID }
            .sorted { $0.taskID < $1.taskID }
    }

    /// Puts a task's segment back in the queue: its node left (`failure` nil), refused it, failed
    /// it, or let its lease run out.
    ///
    /// A failure of kind `segment` counts against the segment: once it has failed on
    /// `maxSegmentFailures` different nodes (or twice as many times in all) its job fails. Failures of
    /// kind `segment` and `node` count against the node (see ``noteNodeFailure(_:reason:now:)``). The
    /// segment waits a backoff that doubles with each requeue (0.5 s, 1 s, 2 s, … up to 30 s),
    /// except after a refusal.
    mutating func requeue(
        _ task: Task, failure: String?, retryable: Bool = true, kind: TaskFailure.Kind = .segment, now: Double
    ) -> [FarmEffect] {
        tasks[task.taskID] = nil
        nodes[task.session]?.inFlight.remove(task.taskID)
        guard var job = jobs[task.jobID], job.state == .running, job.segments[task.segment].phase == .leased,
            let holder = job.segments[task.segment].holder
        else { return [] }
        var effects: [FarmEffect] = []
        var segment = job.segments[task.segment]
        // A failure that counts against someone (a refusal counts against nothing).
        let counted = kind == .refused ? nil : failure
        if counted != nil { segment.avoidedNodes.insert(task.nodeID) }
        let survivor = otherCopies(of: task).first
        if holder != task.taskID || survivor != nil {
            // Another copy runs on: the segment stays with it (a failed duplicate is only logged;
            // a failed original hands its lease to the duplicate).
            if holder == task.taskID, let survivor {
                segment.holder = survivor.taskID
                effects.append(
                    .persist(
                        .moveLease(
                            jobID: task.jobID, index: task.segment, from: task.taskID, to: survivor.taskID,
                            nodeID: survivor.nodeID, failure: counted, expiresIn: max(survivor.deadline - now, 1))))
            }
            job.segments[task.segment] = segment
            jobs[task.jobID] = job
            if let counted { effects += noteNodeFailure(task.nodeID, reason: counted, now: now) }
            return effects
        }
        segment.phase = .ready
        segment.holder = nil
        effects.append(.persist(.release(jobID: task.jobID, index: task.segment, taskID: task.taskID, failure: counted)))
        if failure != nil, kind == .refused {
            segment.attempts = max(segment.attempts - 1, 0)
        } else {
            segment.requeues += 1
            segment.notBefore = now + min(0.5 * pow(2, Double(min(segment.requeues, 32) - 1)), 30)
        }
        if let failure, kind == .segment {
            segment.failures.append("\(task.nodeID): \(failure)")
            segment.failedNodes.insert(task.nodeID)
        }
        job.segments[task.segment] = segment
        jobs[task.jobID] = job
        if let counted { effects += noteNodeFailure(task.nodeID, reason: counted, now: now) }
        guard let failure, kind == .segment else { return effects }
        let nodesFailed = segment.failedNodes.count
        let failures = segment.failures.count
        if !retryable || nodesFailed >= rules.maxSegmentFailures || failures >= 2 * rules.maxSegmentFailures {
            let times = "\(failures) time\(failures == 1 ? "" : "s")"
            let on = "on \(nodesFailed) node\(nodesFailed == 1 ? "" : "s")"
            effects += end(
                task.jobID, reason: "segment \(task.segment) failed \(times) \(on), last on node \(task.nodeID): \(failure)",
                state: .failed, now: now)
        }
        return effects
    }

    /// Whether a segment should rather go to another node than `nodeID`: it failed there, and some
    /// other working node has not failed it.
    func avoids(_ jobID: String, _ index: Int, node nodeID: String) -> Bool {
        guard let failed = jobs[jobID]?.segments[index].avoidedNodes, failed.contains(nodeID) else { return false }
        return nodes.values.contains { other in
            !other.draining && quarantined[other.nodeID] == nil && !failed.contains(other.nodeID)
        }
    }

    /// Counts a failure against a node; `quarantine.failures` of them within `quarantine.windowSeconds`,
    /// with no success in between, keep it out of work for `quarantine.seconds`.
    mutating func noteNodeFailure(_ nodeID: String, reason: String, now clock: Double) -> [FarmEffect] {
        let policy = rules.quarantine
        var recent = (nodeFailures[nodeID] ?? []).filter { clock - $0 <= policy.windowSeconds }
        recent.append(clock)
        nodeFailures[nodeID] = recent
        guard policy.failures > 0, recent.count >= policy.failures, quarantined[nodeID] == nil else { return [] }
        nodeFailures[nodeID] = []
        let why = "\(recent.count) failures in \(Int((clock - recent[0]).rounded())) s, the last: \(reason)"
        quarantined[nodeID] = (clock + policy.seconds, why)
        var effects: [FarmEffect] = []
        effects.log(.warning, "node quarantined", ["node": nodeID, "seconds": "\(Int(policy.seconds))", "reason": why])
        effects.append(.persist(.quarantineNode(id: nodeID, forSeconds: policy.seconds, reason: why)))
        return effects
    }
}
