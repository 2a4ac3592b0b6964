import FarmCoordinator
import FarmMedia
import FarmTestSupport
import Foundation
import Logging
import Testing

/// Split planning on real keyframe indexes of clips made for the test.
@Suite struct PlannerTests {
    init() { MediaLog.quiet() }

    func index(_ name: String, seconds: Double, videoArgs: [String]) throws -> (SourceIndex, URL) {
        let dir = try TestMedia.temporaryDirectory("farm-plan")
        let path = dir.appendingPathComponent(name).path
        try TestMedia.makeClip(at: path, seconds: seconds, audio: false, videoArgs: videoArgs)
        return (try SourceIndex.scan(path: path), dir)
    }

    /// Segments tile the source: contiguous, keyframe-aligned, every frame counted once.
    func expectTiling(_ plans: [SegmentPlan], _ index: SourceIndex) {
        #expect(plans.first?.startKeyframe == 0)
        #expect(plans.last?.endKeyframe == index.keyframes.count)
        #expect(plans.first?.startPTS == nil)
        #expect(plans.last?.endPTS == nil)
        for (a, b) in zip(plans, plans.dropFirst()) {
            #expect(a.endKeyframe == b.startKeyframe)
            #expect(a.endPTS == b.startPTS)
            #expect(b.startPTS == index.keyframes[b.startKeyframe].pts)
        }
        #expect(plans.map(\.expectedFrames).reduce(0, +) == index.totalFrames)
        #expect(plans.enumerated().allSatisfy { $0.offset == $0.element.index })
    }

    @Test func regularGOPsGiveEvenSegments() throws {
        let (index, dir) = try self.index(
            "regular.mp4", seconds: 20, videoArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-bf", "2"])
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(index.totalFrames == 500)
        #expect(index.keyframes.count == 20)
        let plans = SegmentPlanner.plan(index: index, segmentSeconds: 4)
        expectTiling(plans, index)
        #expect(plans.count == 5)
        #expect(plans.allSatisfy { $0.expectedFrames == 100 })
        // Closed GOPs: each payload is exactly the segment's own packets.
        #expect(plans[1].packets == index.keyframes[4].packetIndex..<index.keyframes[8].packetIndex)
    }

    @Test func cutsNearEvenlySpacedTimesBalanceEqualSlots() throws {
        // Keyframes every 2 s and a 7.5 s target: cutting at the first keyframe past each target
        // would give seven 8 s segments and a 4 s tail (32 s against 28 s on two slots); cutting
        // near 7.5, 15, 22.5, ... gives both slots 30 s.
        let (index, dir) = try self.index(
            "balanced.mp4", seconds: 60, videoArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-bf", "0"])
        defer { try? FileManager.default.removeItem(at: dir) }
        let plans = SegmentPlanner.plan(index: index, segmentSeconds: 7.5)
        expectTiling(plans, index)
        #expect(plans.count == 8)
        let seconds = plans.map { Double($0.durationTicks) * Double(index.timeBase.num) / Double(index.timeBase.den) }
        // In order, each segment to the slot that frees first (what the scheduler does with equal nodes).
        var slots = [0.0, 0.0]
        for length in seconds {
            let first = slots[0] <= slots[1] ? 0 : 1
            slots[first] += length
        }
        #expect(slots.max()! <= 30.5, "\(seconds)")
        #expect(seconds.allSatisfy { abs($0 - 7.5) <= 1.5 }, "\(seconds)")
    }

    @Test func irregularKeyframesStillTileAndAvoidATinyTail() throws {
        let (index, dir) = try self.index(
            "irregular.mp4", seconds: 12,
            videoArgs: [
                "-c:v", "libx264", "-preset", "ultrafast", "-g", "1000", "-sc_threshold", "0", "-force_key_frames",
                "0,0.4,0.6,3.7,4.1,8.9,11.8",
            ])
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(index.keyframes.count == 7)
        let plans = SegmentPlanner.plan(index: index, segmentSeconds: 3)
        expectTiling(plans, index)
        // The keyframe 0.2 s before the end would make a tiny last segment: it joins the one before.
        #expect(plans.last!.durationTicks * 3 >= Int64(3 * Double(index.timeBase.den) / Double(index.timeBase.num)))
        #expect(plans.count == 3)
    }

    @Test func farApartKeyframesMakeOneSegment() throws {
        let (index, dir) = try self.index(
            "sparse.mp4", seconds: 6, videoArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-g", "1000"])
        defer { try? FileManager.default.removeItem(at: dir) }
        let plans = SegmentPlanner.plan(index: index, segmentSeconds: 1)
        expectTiling(plans, index)
        #expect(plans.count == 1)
        #expect(plans[0].packets == 0..<index.packetCount)
    }

    @Test func openGOPPayloadsCarryTheNeighbouringGOPs() throws {
        let (index, dir) = try self.index(
            "open.mp4", seconds: 8,
            videoArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-bf", "3", "-x264-params", "open-gop=1:scenecut=0"])
        defer { try? FileManager.default.removeItem(at: dir) }
        let plans = SegmentPlanner.plan(index: index, segmentSeconds: 2)
        expectTiling(plans, index)
        for plan in plans.dropFirst() where !index.keyframes[plan.startKeyframe].isClean {
            #expect(plan.packets.lowerBound == index.keyframes[plan.startKeyframe - 1].packetIndex)
        }
        for plan in plans.dropLast() where !index.keyframes[plan.endKeyframe].isClean {
            #expect(plan.packets.upperBound > index.keyframes[plan.endKeyframe].packetIndex)
        }
        #expect(plans.contains { !index.keyframes[$0.startKeyframe].isClean })
    }

    @Test func defaultLengthKeepsSlotsBusyWithoutTinySegments() {
        #expect(SegmentPlanner.defaultSegmentSeconds(durationSeconds: 180, totalSlots: 2) == 22.5)
        #expect(SegmentPlanner.defaultSegmentSeconds(durationSeconds: 10, totalSlots: 8) == 4)
        #expect(SegmentPlanner.defaultSegmentSeconds(durationSeconds: 7200, totalSlots: 4) == 60)
        // Unequal speeds (50 slots of 1x to 8x): a segment on the slowest slot takes a third of the
        // expected makespan (7200 / 225 = 32 s), so about 10.7 s instead of 36 s.
        let speeds = (0..<50).map { 1 + 7 * Double($0) / 49 }
        let uneven = SegmentPlanner.defaultSegmentSeconds(durationSeconds: 7200, totalSlots: 50, slotSpeeds: speeds)
        #expect(abs(uneven - 32.0 / 3) < 0.01)
        // Equal speeds change nothing.
        let even = SegmentPlanner.defaultSegmentSeconds(
            durationSeconds: 7200, totalSlots: 50, slotSpeeds: Array(repeating: 3, count: 50))
        #expect(even == 36)
    }

    /// Times and lengths at the ends of Int64 and Double (a hostile file's index, a request's length):
    /// the plan still tiles the source, never with more segments than keyframes, and nothing traps.
    @Test(arguments: [4.0, 1e-300, 1e300, .infinity, -.infinity, .nan, -5])
    func extremeTimesAndLengthsStillGiveATiling(segmentSeconds: Double) throws {
        let (scanned, dir) = try self.index(
            "extreme.mp4", seconds: 4, videoArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-bf", "0"])
        defer { try? FileManager.default.removeItem(at: dir) }
        var index = scanned
        #expect(index.keyframes.count == 4)
        // The first keyframe far below zero, the others far above, the end at Int64.max.
        index.keyframes[0].pts = Int64.min + 1
        index.firstPTS = Int64.min + 1
        for k in 1..<4 { index.keyframes[k].pts = Int64.max / 4 * Int64(k) }
        index.endPTS = Int64.max
        index.lastPTS = Int64.max - 1
        let plans = SegmentPlanner.plan(index: index, segmentSeconds: segmentSeconds)
        #expect((1...4).contains(plans.count))
        expectTiling(plans, index)
        #expect(plans.allSatisfy { $0.durationTicks > 0 })
    }
}

/// Admission under a low-disk watermark, with a running coordinator and no nodes.
@Suite struct AdmissionTests {
    @Test func aJobWaitsWhileTheDiskIsBelowTheWatermark() async throws {
        MediaLog.quiet()
        let dir = try TestMedia.temporaryDirectory("farm-disk")
        defer { try? FileManager.default.removeItem(at: dir) }
        let clip = dir.appendingPathComponent("clip.mp4").path
        try TestMedia.makeClip(at: clip, seconds: 1, size: "160x120", audio: false)
        var logger = Logger(label: "farm.test")
        logger.logLevel = .critical
        // A watermark no disk meets: the job must stay queued and say why.
        let coordinator = Coordinator(
            configuration: CoordinatorConfiguration(
                nodeListenPort: 0, dataDirectory: dir.appendingPathComponent("data").path, joinToken: "t",
                minimumFreeBytes: Int64.max / 2, logger: logger))
        let listener = try await coordinator.bind()
        let running = Task { try await coordinator.run(listener) }
        defer { running.cancel() }
        let id = try await coordinator.submit(JobRequest(source: clip, output: dir.appendingPathComponent("out.mp4").path))
        // Other suites run in parallel: give the job time to reach admission, then it must wait there.
        var status = try #require(await coordinator.status(id))
        for _ in 0..<200 where status.phase != "waiting for disk space" {
            try await Task.sleep(for: .milliseconds(100))
            status = try #require(await coordinator.status(id))
        }
        #expect(status.phase == "waiting for disk space")
        try await Task.sleep(for: .milliseconds(500))
        status = try #require(await coordinator.status(id))
        #expect(status.state == .queued)
        #expect(status.phase == "waiting for disk space")
    }
}
