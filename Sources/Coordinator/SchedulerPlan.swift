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
            table[codec] = nodes.map { SchedulingPolicy.unmeasuredSpeed(of: $0, codec: codec, median: median) }
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
