internal import CoreMetrics
internal import Foundation
internal import Metrics
internal import Prometheus
internal import Synchronization
internal import FarmMedia

/// The Prometheus metrics of the HTTP layer. Gauges are set from a coordinator snapshot at scrape
/// time; counters of HTTP bytes are swift-metrics counters backed by the same registry.
final class FarmMetrics: Sendable {
    /// What `farm_scale_up` and `farm_scale_down_hint` are decided from.
    static let scaleUpQueueDepth = 10
    static let scaleUpWaitSeconds = 30.0
    static let scaleDownUtilisation = 0.3
    static let rateWindow = Duration.seconds(60)

    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    /// Bytes received as uploads and sent as outputs.
    let bytesIn: CoreMetrics.Counter
    let bytesOut: CoreMetrics.Counter

    private let jobsByState: [JobState: Prometheus.Gauge]
    private let queueDepth: Prometheus.Gauge
    private let segmentsWaiting: Prometheus.Gauge
    private let oldestWait: Prometheus.Gauge
    private let segmentsCompleted: Prometheus.Counter
    private let segmentsPerSecond: Prometheus.Gauge
    private let encodeFPS: Prometheus.Gauge
    private let nodes: Prometheus.Gauge
    private let slots: Prometheus.Gauge
    private let slotsInUse: Prometheus.Gauge
    private let utilisation: Prometheus.Gauge
    private let fallbacks: Prometheus.Counter
    private let scaleUp: Prometheus.Gauge
    private let scaleDownHint: Prometheus.Gauge
    private let bans: Prometheus.Gauge
    private let refused: Prometheus.Counter
    private let workWaiting: Prometheus.Gauge
    private let scaleDownWindow: Duration

    private struct State {
        var segmentsSeen = 0
        var refusalsSeen = 0
        var fallbacksSeen = 0
        var segmentSamples: [(ContinuousClock.Instant, Int)] = []
        var lowUtilisationSince: ContinuousClock.Instant?
        var nodeFrames: [String: (ContinuousClock.Instant, Int)] = [:]
        var nodeFPS: [String: Double] = [:]
    }
    private let state = Mutex(State())

    init(scaleDownWindow: Duration) {
        self.scaleDownWindow = scaleDownWindow
        factory = PrometheusMetricsFactory(registry: registry)
        bytesIn = CoreMetrics.Counter(label: "farm_http_bytes_in_total", dimensions: [], factory: factory)
        bytesOut = CoreMetrics.Counter(label: "farm_http_bytes_out_total", dimensions: [], factory: factory)
        var byState: [JobState: Prometheus.Gauge] = [:]
        for state in [JobState.queued, .running, .done, .failed, .cancelled] {
            byState[state] = registry.makeGauge(descriptor: Self.descriptor("farm_jobs", "Jobs by state."), labels: [("state", state.rawValue)])
        }
        jobsByState = byState
        queueDepth = registry.makeGauge(descriptor: Self.descriptor("farm_queue_depth", "Unfinished jobs none of whose segments has reached a node yet."))
        segmentsWaiting = registry.makeGauge(descriptor: Self.descriptor("farm_segments_waiting", "Segments of running jobs waiting for a node slot."))
        oldestWait = registry.makeGauge(descriptor: Self.descriptor("farm_oldest_wait_seconds", "How long the longest-waiting queued job has waited."))
        segmentsCompleted = registry.makeCounter(descriptor: Self.descriptor("farm_segments_completed_total", "Segments encoded and accepted."))
        segmentsPerSecond = registry.makeGauge(descriptor: Self.descriptor("farm_segments_per_second", "Segments completed per second over the last minute."))
        encodeFPS = registry.makeGauge(descriptor: Self.descriptor("farm_encode_fps", "Frames per second encoded, all running jobs."))
        nodes = registry.makeGauge(descriptor: Self.descriptor("farm_nodes", "Connected render nodes."))
        slots = registry.makeGauge(descriptor: Self.descriptor("farm_node_slots", "Encoding slots of connected, not draining nodes."))
        slotsInUse = registry.makeGauge(descriptor: Self.descriptor("farm_node_slots_in_use", "Slots encoding a segment now."))
        utilisation = registry.makeGauge(descriptor: Self.descriptor("farm_utilisation", "Slots in use over slots (0 to 1)."))
        fallbacks = registry.makeCounter(descriptor: Self.descriptor("farm_fallbacks_total", "Segments a node re-encoded in software after its hardware encoder failed."))
        scaleUp = registry.makeGauge(descriptor: Self.descriptor("farm_scale_up", "1 when more nodes are wanted: more than 10 jobs queued, or a job waited more than 30 s."))
        scaleDownHint = registry.makeGauge(descriptor: Self.descriptor("farm_scale_down_hint", "1 when utilisation has stayed under 30 % for the scale-down window."))
        bans = registry.makeGauge(descriptor: Self.descriptor("farm_nodes_banned", "Bans in force (node ids, with their addresses where banned)."))
        workWaiting = registry.makeGauge(descriptor: Self.descriptor("farm_work_waiting", "Pieces of the coordinator's CPU work (result checks) waiting for a thread of its budget."))
        refused = registry.makeCounter(descriptor: Self.descriptor("farm_results_refused_total", "Results the verifier refused: evidence against their nodes."))
    }

    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// Unfinished jobs none of whose segments is leased or done: work waiting for capacity.
    static func isWaiting(_ job: JobStatus) -> Bool {
        !job.state.isFinished && !job.segments.contains { $0.state == "running" || $0.state == "done" }
    }

    /// Sets every gauge from a snapshot and renders the registry in the Prometheus text format.
    func render(
        jobs: [JobStatus], nodeList: [NodeStatus], bans banCount: Int = 0, refusedResults: Int = 0,
        workWaiting waiting: Int = 0, now: ContinuousClock.Instant = .now
    ) -> String {
        update(jobs: jobs, nodeList: nodeList, now: now)
        workWaiting.set(Double(waiting))
        bans.set(Double(banCount))
        let newRefusals = state.withLock { s in
            defer { s.refusalsSeen = max(s.refusalsSeen, refusedResults) }
            return max(refusedResults - s.refusalsSeen, 0)
        }
        if newRefusals > 0 { refused.increment(by: Int64(newRefusals)) }
        return registry.emitToString()
    }

    func update(jobs: [JobStatus], nodeList: [NodeStatus], now: ContinuousClock.Instant) {
        var counts: [JobState: Int] = [:]
        for job in jobs { counts[job.state, default: 0] += 1 }
        for (state, gauge) in jobsByState { gauge.set(Double(counts[state] ?? 0)) }
        let waiting = jobs.filter(Self.isWaiting)
        queueDepth.set(Double(waiting.count))
        let longestWait = waiting.map(\.wallSeconds).max() ?? 0
        oldestWait.set(longestWait)
        let running = jobs.filter { $0.state == .running }
        segmentsWaiting.set(
            Double(running.reduce(0) { $0 + $1.segments.filter { $0.state == "queued" || $0.state == "pending" }.count }))
        encodeFPS.set(running.reduce(0) { $0 + $1.fps })
        let segmentsDone = jobs.reduce(0) { $0 + $1.segments.filter { $0.state == "done" }.count }
        let fallbackCount = jobs.reduce(0) { $0 + $1.fallbacks }
        let active = nodeList.filter { !$0.draining }
        let totalSlots = active.reduce(0) { $0 + $1.slots }
        let used = nodeList.reduce(0) { $0 + $1.slotsInUse }
        let use = totalSlots > 0 ? min(Double(used) / Double(totalSlots), 1) : 0
        nodes.set(Double(nodeList.count))
        slots.set(Double(totalSlots))
        slotsInUse.set(Double(used))
        utilisation.set(use)
        scaleUp.set(waiting.count > Self.scaleUpQueueDepth || longestWait > Self.scaleUpWaitSeconds ? 1.0 : 0.0)

        let (newSegments, newFallbacks, rate, lowSince) = state.withLock { s in
            let newSegments = max(segmentsDone - s.segmentsSeen, 0)
            s.segmentsSeen = max(s.segmentsSeen, segmentsDone)
            let newFallbacks = max(fallbackCount - s.fallbacksSeen, 0)
            s.fallbacksSeen = max(s.fallbacksSeen, fallbackCount)
            s.segmentSamples.append((now, s.segmentsSeen))
            s.segmentSamples.removeAll { now - $0.0 > Self.rateWindow }
            var rate = 0.0
            if let first = s.segmentSamples.first, now - first.0 > .seconds(1) {
                rate = Double(s.segmentsSeen - first.1) / (now - first.0).seconds
            }
            // Idle fleets only: no nodes means nothing to scale down.
            if !nodeList.isEmpty, use < Self.scaleDownUtilisation {
                if s.lowUtilisationSince == nil { s.lowUtilisationSince = now }
            } else {
                s.lowUtilisationSince = nil
            }
            return (newSegments, newFallbacks, rate, s.lowUtilisationSince)
        }
        if newSegments > 0 { segmentsCompleted.increment(by: Int64(newSegments)) }
        if newFallbacks > 0 { fallbacks.increment(by: Int64(newFallbacks)) }
        segmentsPerSecond.set(rate)
        scaleDownHint.set(lowSince.map { now - $0 >= scaleDownWindow } == true ? 1.0 : 0.0)
    }

    /// Frames per second per node, measured between observations at least two seconds apart:
    /// frames of segments the node finished plus frames of those it is encoding now.
    func nodeSpeeds(jobs: [JobStatus], now: ContinuousClock.Instant = .now) -> [String: Double] {
        var frames: [String: Int] = [:]
        for job in jobs {
            for segment in job.segments where segment.state == "done" || segment.state == "running" {
                if let node = segment.node { frames[node, default: 0] += segment.frames }
            }
        }
        return state.withLock { s in
            for (node, total) in frames {
                if let (then, before) = s.nodeFrames[node] {
                    let elapsed = (now - then).seconds
                    guard elapsed >= 2 else { continue }
                    s.nodeFPS[node] = Double(max(total - before, 0)) / elapsed
                }
                s.nodeFrames[node] = (now, total)
            }
            return s.nodeFPS
        }
    }
}
