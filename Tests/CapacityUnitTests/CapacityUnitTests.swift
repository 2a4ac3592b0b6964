@testable import FarmCapacity
import FarmProtocol
import Foundation
import Testing

/// The capacity module without processes: the report's figures, the load's scale-up decisions and the HTML
/// page's escaping.
struct CapacityUnitTests {
    /// A coordinator API that is never reached: the report is built from a record.
    struct Unreachable: CapacityAPI {
        func failure() -> CapacityAPIFailure { CapacityAPIFailure(status: nil, description: "not reachable in unit tests") }
        func readyNodes() async throws -> Int { throw failure() }
        func submit(source: String, codec: String, preset: String) async throws -> String { throw failure() }
        func upload(file: String, codec: String, preset: String) async throws -> String { throw failure() }
        func jobs() async throws -> [UInt8] { throw failure() }
        func metrics() async throws -> String { throw failure() }
        func cancel(job id: String) async throws { throw failure() }
    }

    static func run(server: String? = nil) -> CapacityRun {
        CapacityRun(
            tier: .budget, server: server, remote: server == nil ? nil : Unreachable(), embeddedAPI: { _, _ in Unreachable() },
            executable: "/nonexistent/farm", duration: 60, clipSeconds: 2, frameRate: 30, codec: "h264", preset: "ultrafast",
            commandLine: "farm capacity --tier budget", log: { _ in })
    }

    static func job(_ id: String, submitted: Double, started: Double, finished: Double?, seconds: Double = 2) -> CapacityReport.Job {
        CapacityReport.Job(
            id: id, clip: "720p", state: finished == nil ? "running" : "done", submittedAt: submitted, startedAt: started,
            finishedAt: finished, latencySeconds: finished.map { $0 - submitted }, waitSeconds: started - submitted,
            sourceSeconds: seconds)
    }

    static func sample(_ t: Double, queue: Int, slotsInUse: Int, slots: Int = 2) -> CapacityReport.Sample {
        CapacityReport.Sample(
            t: t, queueDepth: queue, running: slotsInUse, completed: 0, submitted: 0, slotsInUse: slotsInUse, slots: slots,
            oldestWaitSeconds: 0, offeredJobsPerHour: 100, scaleUp: false, rssMB: [:], cores: [:])
    }

    static func record(jobs: [CapacityReport.Job], samples: [CapacityReport.Sample]) -> LoadRecord {
        LoadRecord(
            jobs: jobs, samples: samples, rejected: 0, scaleUp: nil, maxOffered: 100, pilotSeconds: nil, pilotEstimate: nil,
            elapsedSeconds: 100, peakRSS: ["coordinator": 50, "node-0": 150], cpuSeconds: ["node-0": (1, 41)],
            coordinatorRSSFromMetrics: nil)
    }

    static let machine = CapacityReport.Machine(cpus: 2, loadAverageStart: 0.5, loadAverageEnd: 0.5)

    @Test func jobsPerHourIsMeasuredWhileTheFarmWasSaturated() {
        // Saturated from 10 s to 50 s; completions at 20, 30, 40 and 50 s inside, one at 90 s outside.
        let jobs = [20.0, 30, 40, 50, 90].enumerated().map { i, at in Self.job("j\(i)", submitted: 0, started: at - 5, finished: at) }
        let samples = stride(from: 10.0, through: 50, by: 10).map { Self.sample($0, queue: 3, slotsInUse: 2) }
            + [Self.sample(60, queue: 0, slotsInUse: 1)]
        let report = Self.run().makeReport(
            Self.record(jobs: jobs, samples: samples), started: Date(), machine: Self.machine, clips: [], confinement: nil)
        #expect(report.jobsPerHourBasis == "saturated")
        // Three intervals between four completions over 30 s: 360 jobs per hour; 3 × 2 s of video in 30 s.
        #expect(abs(report.jobsPerHour - 360) < 1e-9)
        #expect(abs(report.realtimeFactor - 0.2) < 1e-9)
        #expect(report.jobsCompleted == 5)
        #expect(report.latencyMax == 90)
        #expect(report.peakRSSMB == 200)
        #expect(report.cpu.secondsByProcess["node-0"] == 40)
        #expect(!report.notes.contains { $0.contains("too few jobs") })
    }

    @Test func withoutSaturationTheRateIsOverTheWholeRunAndSaysSo() {
        let jobs = [Self.job("a", submitted: 0, started: 0, finished: 30), Self.job("b", submitted: 10, started: 10, finished: 60)]
        let report = Self.run().makeReport(
            Self.record(jobs: jobs, samples: [Self.sample(5, queue: 0, slotsInUse: 1)]), started: Date(),
            machine: Self.machine, clips: [], confinement: nil)
        #expect(report.jobsPerHourBasis == "whole run")
        #expect(abs(report.jobsPerHour - 120) < 1e-9)
        #expect(report.notes.contains { $0.contains("too few jobs finished while others waited") })
        #expect(report.notes.contains { $0.contains("did not fire") })
    }

    @Test func aRemoteFarmsMemoryIsWhatItsMetricsShowed() {
        var record = Self.record(jobs: [], samples: [])
        record.coordinatorRSSFromMetrics = 75
        let report = Self.run(server: "http://farm.example:8080").makeReport(
            record, started: Date(), machine: Self.machine, clips: [], confinement: nil)
        #expect(report.mode == "server")
        #expect(report.peakRSSMBByProcess == ["coordinator": 75])
        #expect(report.notes.contains { $0.contains("/metrics") })
    }

    @Test func percentilesInterpolateBetweenRanks() {
        #expect(percentile([], 50) == nil)
        #expect(percentile([4], 95) == 4)
        #expect(percentile([1, 2, 3, 4], 50) == 2.5)
        #expect(percentile([0, 10], 95) == 9.5)
    }

    @Test func metricsParseNamesWithLabelsAndSkipComments() {
        let metrics = Metrics.parse(
            """
            # HELP farm_queue_depth Jobs waiting.
            farm_queue_depth 12
            farm_node_slots{tier="budget"} 2
            not a metric line
            farm_scale_up 1
            """)
        #expect(metrics["farm_queue_depth"] == 12)
        #expect(metrics["farm_node_slots{tier=\"budget\"}"] == 2)
        #expect(metrics["farm_scale_up"] == 1)
        #expect(metrics["not a metric line"] == nil)
    }

    static func queued(_ count: Int) -> [CapacityJob] {
        (0..<count).map { CapacityJob(id: "j\($0)", state: "queued", segments: [], sourceSeconds: 2, wallSeconds: nil) }
    }

    @Test func theRampStopsWhenTheCoordinatorSaysScaleUp() async {
        let recorder = LoadRecorder()
        let clip = CapacityLoad.Clip(label: "720p", path: "/clips/720p.mp4", seconds: 2)
        for job in Self.queued(3) { await recorder.submitted(id: job.id, clip: clip, at: .now) }
        await recorder.setOffered(200)
        #expect(await recorder.observe(jobs: Self.queued(3), metrics: Metrics.parse("farm_scale_up 0"), processes: [:]) == nil)
        #expect(await !recorder.stopSubmitting)
        let fired = await recorder.observe(
            jobs: Self.queued(3), metrics: Metrics.parse("farm_scale_up 1\nfarm_queue_depth 3"), processes: [:])
        #expect(fired?.contains("scale-up fired at 200 jobs/hour") == true)
        #expect(await recorder.stopSubmitting)
        // It fires once: a later poll does not report it again.
        #expect(await recorder.observe(jobs: Self.queued(3), metrics: Metrics.parse("farm_scale_up 1"), processes: [:]) == nil)
        let record = await recorder.record()
        #expect(record.scaleUp?.offeredJobsPerHour == 200)
        #expect(record.samples.map(\.scaleUp) == [false, true, true])
    }

    @Test func withoutTheMetricTheSeedsTriggersDecide() async {
        let recorder = LoadRecorder()
        let clip = CapacityLoad.Clip(label: "720p", path: "/clips/720p.mp4", seconds: 2)
        for job in Self.queued(11) { await recorder.submitted(id: job.id, clip: clip, at: .now) }
        // Ten waiting is not more than ten.
        #expect(await recorder.observe(jobs: Self.queued(11), metrics: Metrics.parse("farm_queue_depth 10"), processes: [:]) == nil)
        // No metrics at all: the run counts its own waiting jobs, eleven.
        let fired = await recorder.observe(jobs: Self.queued(11), metrics: Metrics(), processes: [:])
        #expect(fired?.contains("queue: 11 jobs waiting") == true)
    }

    @Test func aRefusedJobEndsTheRamp() async {
        let recorder = LoadRecorder()
        #expect(await !recorder.stopSubmitting)
        await recorder.rejected()
        #expect(await recorder.stopSubmitting)
        #expect(await recorder.record().rejected == 1)
    }

    @Test func thePageEscapesWhatItQuotes() {
        #expect(CapacityHTML.escape(#"<script>alert("x")</script> & co"#)
            == "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co")
        var record = Self.record(jobs: [Self.job("a", submitted: 0, started: 1, finished: 5)], samples: [Self.sample(1, queue: 0, slotsInUse: 1)])
        record.rejected = 1
        var report = Self.run().makeReport(record, started: Date(), machine: Self.machine, clips: [], confinement: nil)
        report.notes.append("<img src=x onerror=alert(1)>")
        let page = CapacityHTML.render(report)
        #expect(!page.contains("<img src=x"))
        #expect(page.contains("&lt;img src=x onerror=alert(1)&gt;"))
        #expect(!page.contains("<script"))
        #expect(page.hasPrefix("<!doctype html>") || page.lowercased().contains("<html"))
    }
}
