internal import FarmHWEncode
internal import Logging
package import FarmMedia
package import FarmProtocol
internal import Foundation

// The transitions driven by nodes: joins, leaves, heartbeats, results, failures, and the clock.
extension FarmState {
    /// A node proved the join token. Its claimed slots are capped by ``Rules/maxNodeSlots``.
    package mutating func nodeJoined(_ hello: Hello, address: String, now: Double) -> (session: UInt64, effects: [FarmEffect]) {
        let session = nextSession()
        let slots = min(max(Int(hello.slots), 1), rules.maxNodeSlots)
        let threads = Int(min(hello.threads, 4096))
        nodes[session] = Node(
            session: session, nodeID: hello.nodeID, address: address, slots: slots, threads: threads,
            capabilitiesJSON: hello.capabilitiesJSON, lastSeen: now)
        let claimed = NodeLabels.claimed(in: hello.capabilitiesJSON)
        nodes[session]?.claimedLabels = claimed
        nodes[session]?.labels = (rules.nodeLabels[hello.nodeID] ?? []).union(rules.acceptNodeLabels ? Set(claimed) : [])
        var effects: [FarmEffect] = []
        effects.log(.info, "node joined", ["node": hello.nodeID, "address": address, "slots": "\(slots)"])
        // The `calibration` a hello may carry is the node's own claim: it is shown in the node's capabilities, never
        // used. Speeds come only from results the coordinator timed itself (lease to result, `taskCompleted`).
        effects.append(
            .persist(
                .upsertNode(
                    id: hello.nodeID, address: address, slots: slots, threads: threads,
                    capabilities: hello.capabilitiesJSON)))
        return (session, effects + schedule(now: now))
    }

    /// A node's connection ended: its tasks go back to the queue.
    mutating func nodeLeft(_ session: UInt64, reason: String, now: Double) -> [FarmEffect] {
        guard let node = nodes.removeValue(forKey: session) else { return [] }
        var effects: [FarmEffect] = []
        effects.log(.info, "node left", ["node": node.nodeID, "reason": reason])
        for taskID in node.inFlight.sorted() {
            if let task = tasks[taskID] { effects += requeue(task, failure: nil, now: now) }
        }
        if !nodes.values.contains(where: { $0.nodeID == node.nodeID }) {
            effects.append(.persist(.markNode(id: node.nodeID, state: .gone, reason: reason)))
        }
        return effects + schedule(now: now)
    }

    /// A heartbeat: the node is alive, and its tasks' progress. A progress entry for a task the
    /// session does not hold, or beyond the segment's frames, is ignored; progress that rises
    /// extends the task's lease.
    package mutating func heartbeat(_ session: UInt64, _ heartbeat: Heartbeat, now: Double) -> [FarmEffect] {
        guard nodes[session] != nil else { return [] }
        nodes[session]?.lastSeen = now
        var effects: [FarmEffect] = []
        for progress in heartbeat.activeTasks {
            guard let task = tasks[progress.taskID], task.session == session,
                let job = jobs[task.jobID], let segment = job.segments[safe: task.segment],
                progress.framesDone <= UInt64(max(segment.plan.expectedFrames, 0))
            else { continue }
            let frames = Int(progress.framesDone)
            tasks[progress.taskID]?.progressTime = now
            guard frames > task.framesDone else { continue }
            tasks[progress.taskID]?.framesDone = frames
            // Rising progress extends the lease, but never past `maximumLeaseFactor` times a whole lease from its start: a
            // node that creeps a frame at a time cannot hold a segment for ever.
            let expected = expectedEncodeSeconds(task, job: job)
            let cap = task.startedAt + rules.maximumLeaseFactor * leaseSeconds(expected: expected, remaining: 1)
            let remaining = 1 - Double(frames) / Double(max(segment.plan.expectedFrames, 1))
            let extended = min(cap, now + leaseSeconds(expected: expected, remaining: remaining))
            if extended > task.deadline + 1, !task.isDuplicate || segment.holder == task.taskID {
                tasks[progress.taskID]?.deadline = extended
                if segment.holder == task.taskID {
                    effects.append(
                        .persist(
                            .renewLease(jobID: task.jobID, index: task.segment, taskID: task.taskID, expiresIn: extended - now)))
                }
            } else if extended > task.deadline {
                tasks[progress.taskID]?.deadline = extended
            }
        }
        return effects
    }

    mutating func nodeDraining(_ session: UInt64) -> [FarmEffect] {
        guard let node = nodes[session] else { return [] }
        nodes[session]?.draining = true
        return [.persist(.markNode(id: node.nodeID, state: .draining, reason: nil))]
    }

    /// Tells every node to finish what it has and leave.
    mutating func drainAll() -> [FarmEffect] {
        var effects: [FarmEffect] = []
        for session in nodes.keys.sorted() {
            guard let node = nodes[session] else { continue }
            nodes[session]?.draining = true
            effects.append(.send(session: session, .drain))
            effects.append(.persist(.markNode(id: node.nodeID, state: .draining, reason: nil)))
        }
        return effects
    }

    /// The clock moved: nodes silent for longer than the lease timeout are closed; leases past
    /// their deadline are taken back (cancelled on their node, requeued, counted against the node);
    /// then the scheduler runs.
    package mutating func tick(now: Double) -> [FarmEffect] {
        var effects: [FarmEffect] = []
        for node in nodes.values.sorted(by: { $0.session < $1.session })
        where now - node.lastSeen > rules.leaseTimeoutSeconds {
            effects.log(.warning, "node stalled: no heartbeat, closing it", ["node": node.nodeID])
            effects.append(.close(session: node.session, reason: "no heartbeat for \(Int(rules.leaseTimeoutSeconds)) s"))
        }
        for task in tasks.values.sorted(by: { $0.taskID < $1.taskID }) where !task.returning && now > task.deadline {
            let held = Int((now - task.startedAt).rounded())
            let reason = "lease expired after \(held) s (\(task.framesDone) frames done)"
            effects.log(
                .warning, "lease expired",
                ["job": task.jobID, "segment": "\(task.segment)", "node": task.nodeID, "task": "\(task.taskID)"])
            effects.append(.send(session: task.session, .cancel(taskID: task.taskID)))
            effects += requeue(task, failure: reason, kind: .node, now: now)
        }
        return effects + schedule(now: now)
    }

    /// A result arrived whole and passed the session's checks (checksum, frame count, stream header).
    package mutating func taskCompleted(
        _ session: UInt64, _ result: TaskResult, path: String, parameters: CodecParameters, now: Double
    ) -> [FarmEffect] {
        guard let task = tasks[result.taskID], task.session == session else { return [] }
        tasks[result.taskID] = nil
        nodes[session]?.inFlight.remove(result.taskID)
        nodes[session]?.lastSeen = now
        nodes[session]?.segmentsDone += 1
        nodeFailures[task.nodeID] = nil
        guard var job = jobs[task.jobID], job.state == .running, job.segments[task.segment].phase == .leased,
            let holder = job.segments[task.segment].holder
        else { return schedule(now: now) }
        var effects: [FarmEffect] = []
        // The first result pins the job's stream header. A later one with other parameter sets (a
        // hardware node, or a software fallback) can still join with in-band parameter sets, as long as
        // codec, picture size and NAL framing agree.
        if let pinned = job.parameters, let problem = parameters.joinProblem(with: pinned) {
            tasks[result.taskID] = task
            nodes[session]?.inFlight.insert(result.taskID)
            nodes[session]?.segmentsDone -= 1
            return requeue(task, failure: "result cannot join the job's stream: \(problem)", now: now) + schedule(now: now)
        }
        if let reason = result.fallbackReason {
            job.fallbacks += 1
            effects.log(
                .warning, "segment fell back to software",
                ["job": task.jobID, "segment": "\(task.segment)", "reason": reason])
        }
        let pin = job.parameters == nil ? parameters.serialized : nil
        if job.parameters == nil { job.parameters = parameters }
        if holder != task.taskID, let original = tasks[holder] {
            // The duplicate won: the store's lease moves to it before the result is recorded.
            effects.append(
                .persist(
                    .moveLease(
                        jobID: task.jobID, index: task.segment, from: holder, to: task.taskID, nodeID: task.nodeID,
                        failure: nil, expiresIn: max(task.deadline - now, 1))))
            effects.log(
                .info, "duplicate finished first",
                ["job": task.jobID, "segment": "\(task.segment)", "node": task.nodeID, "straggler": original.nodeID])
        }
        for other in otherCopies(of: task) {
            tasks[other.taskID] = nil
            nodes[other.session]?.inFlight.remove(other.taskID)
            effects.append(.send(session: other.session, .cancel(taskID: other.taskID)))
            effects.log(
                .info, "slower copy cancelled",
                ["job": task.jobID, "segment": "\(task.segment)", "node": other.nodeID, "task": "\(other.taskID)"])
        }
        let frames = Int(clamping: result.frames)
        let bytes = Int64(clamping: result.byteLength)
        effects.append(
            .persist(
                .complete(
                    jobID: task.jobID, index: task.segment, taskID: task.taskID, nodeID: task.nodeID, path: path,
                    bytes: bytes, checksum: result.checksum, frames: frames, encoder: result.encoder, parameters: pin)))
        job.segments[task.segment].phase = .done
        job.segments[task.segment].holder = nil
        job.segments[task.segment].result = Result(path: path, frames: frames, encoder: result.encoder, nodeID: task.nodeID)
        job.encodersByNode[task.nodeID] = result.encoder
        if task.segment < job.segmentSeconds.count {
            // Lease to result: what the scheduler plans with (transfers included).
            speeds.record(
                node: task.nodeID, codec: job.request.codec.rawValue, sourceSeconds: job.segmentSeconds[task.segment],
                wallSeconds: max(now - task.startedAt, 0.001))
        }
        effects.log(
            .info, "segment done",
            [
                "job": task.jobID, "segment": "\(task.segment)", "node": task.nodeID, "frames": "\(frames)",
                "encoder": result.encoder,
                "encode_s": result.encodeSeconds.isFinite ? String(format: "%.2f", result.encodeSeconds) : "?",
            ])
        jobs[task.jobID] = job
        if job.allSegmentsDone { effects.append(.segmentsDone(jobID: task.jobID)) }
        return effects + schedule(now: now)
    }

    /// A node reported that a task failed (or refused it), or the coordinator found its result bad.
    mutating func taskFailed(
        _ session: UInt64, taskID: UInt64, reason: String, retryable: Bool, kind: TaskFailure.Kind = .segment,
        now: Double
    ) -> [FarmEffect] {
        guard let task = tasks[taskID], task.session == session else { return [] }
        var effects: [FarmEffect] = []
        effects.log(
            kind == .refused ? .info : .warning, kind == .refused ? "segment refused" : "segment failed",
            ["job": task.jobID, "segment": "\(task.segment)", "node": task.nodeID, "reason": reason])
        return effects + requeue(task, failure: reason, retryable: retryable || kind == .refused, kind: kind, now: now)
            + schedule(now: now)
    }

    mutating func nextSession() -> UInt64 {
        defer { nextSessionID += 1 }
        return nextSessionID
    }

    mutating func nextTask() -> UInt64 {
        defer { nextTaskID += 1 }
        return nextTaskID
    }
}
