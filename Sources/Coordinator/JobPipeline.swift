internal import FarmHWEncode
internal import FarmMedia
internal import FarmProtocol
internal import Foundation
internal import Logging

/// Each job's pipeline, straight-line: admission, fetch, index, plan, split, await the segments,
/// assemble, verify, publish. The decisions along the way are ``FarmState``'s; the FFmpeg work runs
/// on threads of its own.
extension Coordinator {
    func runJob(_ id: String) async {
        // Admission: wait for one of the concurrent places; a job cancelled meanwhile never starts.
        while runningJobs >= configuration.maxConcurrentJobs, !stopping {
            await withCheckedContinuation { admissionWaiters.append($0) }
        }
        guard !stopping, state.jobs[id]?.state == .queued else { return }
        // Low-disk watermark: admission pauses until there is room again (checked every 5 s).
        var warned = false
        while !stopping, !Task.isCancelled, state.jobs[id]?.state == .queued, let free = freeBytes(),
            free < configuration.minimumFreeBytes
        {
            if !warned {
                logger.warning(
                    "low disk: admission paused",
                    metadata: ["job": "\(id)", "free_mb": "\(free >> 20)", "watermark_mb": "\(configuration.minimumFreeBytes >> 20)"])
                warned = true
            }
            apply(state.setPhase(id, "waiting for disk space"))
            try? await Task.sleep(for: .seconds(5))
        }
        guard !stopping, !Task.isCancelled, state.jobs[id]?.state == .queued else { return }
        runningJobs += 1
        defer {
            runningJobs -= 1
            if !admissionWaiters.isEmpty { admissionWaiters.removeFirst().resume() }
        }
        await runAdmittedJob(id)
    }

    private func runAdmittedJob(_ id: String) async {
        guard let job = state.jobs[id], let flag = cancelFlags[id] else { return }
        var request = job.request
        var log = logger
        log[metadataKey: "job"] = "\(id)"
        let workDirectory = job.workDirectory
        apply(state.jobStarted(id))
        let temporaryOutput = Self.temporaryPath(for: request.output, id: id)
        do {
            try FileManager.default.createDirectory(atPath: workDirectory, withIntermediateDirectories: true)
            let source = try await fetchSource(id, request.source, into: workDirectory, cancel: flag)
            apply(state.setPhase(id, "indexing"))
            let limits = configuration.sourceLimits
            let original = SourceURL.redacted(request.source)
            let container = AssemblyRequest.container(forOutput: request.output)
            let (info, index) = try await Offload.run("index \(id)") { threadFlag in
                let info = try MediaInfo.probe(path: source)
                try limits.check(info, source: original)
                try AssemblyRequest.checkStreams(sourcePath: source, container: container)
                let index = try SourceIndex.scan(path: source) { threadFlag.isCancelled || flag.isCancelled }
                return (info, index)
            }
            if request.segmentSeconds == nil {
                // A URL source: its segment length is chosen now and kept, so a resume plans the same.
                request.segmentSeconds = defaultSegmentSeconds(info.durationSeconds, request)
                let json = try JobStore.encodeJSON(request)
                try await persist { try await $0.updateRequest(id, request: json) }
            }
            let seconds = request.segmentSeconds ?? 0
            let plans = SegmentPlanner.plan(index: index, segmentSeconds: seconds)
            let adopted = try await adoptFinishedSegments(id, index: index, info: info, plans: plans, log: log)
            guard let encoder = EncoderCatalog.softwareEncoder(for: request.codec) else {
                throw CoordinatorError(.invalidRequest, "no \(request.codec.rawValue) encoder in this build of libavcodec")
            }
            let config = try EncoderCatalog.configuration(
                for: index, codec: request.codec, encoder: encoder, crf: request.crf, preset: request.preset, threads: 0)
            try await Offload.run("validate \(id)") { _ in try EncoderCatalog.validate(config) }
            guard state.jobs[id]?.state == .running else { return }
            apply(
                state.jobPlanned(
                    id, segments: plans.map { adopted.segments[$0.index] ?? FarmState.Segment(plan: $0) },
                    segmentSeconds: plans.map { Double($0.durationTicks) * index.timeBase.doubleValue },
                    settings: EncodeSettings(config), parameters: adopted.pinned, totalFrames: index.totalFrames,
                    sourceSeconds: info.durationSeconds, now: now))
            log.info(
                "job planned",
                metadata: [
                    "segments": "\(plans.count)", "frames": "\(index.totalFrames)",
                    "segment_seconds": "\(String(format: "%.1f", seconds))", "encoder": "\(encoder)",
                ])
            apply(state.setPhase(id, "encoding"))
            try await split(id, source: source, index: index, plans: plans.filter { adopted.segments[$0.index] == nil }, flag: flag)
            await waitForSegments(id)
            guard let done = state.jobs[id], done.state == .running else {
                throw CoordinatorError(.jobFailed, state.jobs[id]?.error ?? "job stopped")
            }
            apply(state.setPhase(id, "assembling"))
            let assembly = AssemblyRequest(
                sourcePath: source, videoStreamIndex: index.videoStreamIndex,
                segmentFiles: done.segments.map { $0.result?.path ?? "" },
                outputPath: temporaryOutput, container: AssemblyRequest.container(forOutput: request.output))
            let report = try await Offload.run("assemble \(id)") { threadFlag in
                try Assembler.assemble(assembly) { threadFlag.isCancelled || flag.isCancelled }
            }
            state.setDropped(id, report.dropped)
            apply(state.setPhase(id, "verifying"))
            let totalFrames = index.totalFrames
            _ = try await Offload.run("verify \(id)") { threadFlag in
                try OutputVerifier.verify(
                    path: temporaryOutput, videoStreamIndex: report.videoOutputIndex, expectedFrames: totalFrames,
                    expectedPackets: report.packetsPerStream, threads: 0,
                    decode: .joins(segmentPackets: report.segmentPackets, frames: 16)) {
                        threadFlag.isCancelled || flag.isCancelled
                    }
            }
            guard state.jobs[id]?.state == .running else {
                throw CoordinatorError(.jobFailed, state.jobs[id]?.error ?? "job stopped")
            }
            apply(state.setPhase(id, "publishing"))
            let output = request.output
            try await Offload.run("publish \(id)") { _ in try OutputPublisher.publish(temporaryOutput, as: output) }
            apply(state.finish(id, now: now))
            log.info("job done", metadata: ["output": "\(request.output)"])
        } catch {
            unlink(temporaryOutput)
            if stopping {
                logger.notice("job left resumable at shutdown", metadata: ["job": "\(id)"])
                return
            }
            let cancelled = flag.isCancelled && state.jobs[id]?.state == .cancelled
            apply(state.end(id, reason: "\(error)", state: cancelled ? .cancelled : .failed, now: now))
        }
        if !request.keepWork { try? FileManager.default.removeItem(atPath: workDirectory) }
    }

    /// Records the plan; a job planned before (a restart) keeps the segments whose files still
    /// check out, and the stream header its first result pinned.
    private func adoptFinishedSegments(
        _ id: String, index: SourceIndex, info: MediaInfo, plans: [SegmentPlan], log: Logger
    ) async throws -> (segments: [Int: FarmState.Segment], pinned: CodecParameters?) {
        let totalFrames = index.totalFrames
        let sourceSeconds = info.durationSeconds
        let outcome = try await persist {
            try await $0.setPlan(
                id, settings: nil, totalFrames: totalFrames, sourceSeconds: sourceSeconds, plans: plans,
                ifDifferent: .replace)
        }
        guard outcome == .unchanged else { return ([:], nil) }
        let verification = try await persist { store in
            try await store.verifySegments(id) { path in
                try await Offload.run("digest") { _ in try JobStore.fileDigest(atPath: path) }
            }
        }
        var adopted: [Int: FarmState.Segment] = [:]
        for stored in try await persist({ try await $0.segments(id) }) {
            guard let plan = plans[safe: stored.index] else { continue }
            var segment = FarmState.Segment(plan: plan)
            if stored.state == .done, let path = stored.resultPath {
                segment.phase = .done
                segment.result = FarmState.Result(
                    path: path, frames: stored.frames ?? plan.expectedFrames, encoder: stored.encoder ?? "",
                    nodeID: stored.doneNode ?? "")
            } else if stored.state == .ready, let path = stored.sourcePath, let checksum = stored.sourceChecksum {
                segment.phase = .ready
                segment.source = FarmState.SourceFile(path: path, bytes: stored.sourceBytes ?? 0, checksum: [UInt8](checksum))
            } else {
                continue
            }
            adopted[stored.index] = segment
        }
        var pinned: CodecParameters?
        if let bytes = try await persist({ try await $0.job(id)?.pinnedParameters }) {
            pinned = try? CodecParameters(serialized: [UInt8](bytes))
        }
        log.notice(
            "job resumed",
            metadata: [
                "encoded": "\(adopted.values.filter { $0.phase == .done }.count)",
                "split": "\(adopted.values.filter { $0.phase == .ready }.count)",
                "reset": "\(verification.toReady.count + verification.toPending.count)",
            ])
        return (adopted, pinned)
    }

    /// Splits the source in one sequential read; each segment becomes leasable the moment it is written.
    private func split(
        _ id: String, source: String, index: SourceIndex, plans: [SegmentPlan], flag: CancellationFlag
    ) async throws {
        let (ready, readyContinuation) = AsyncStream<(Int, String, Int64, [UInt8])>.makeStream()
        let workDirectory = state.jobs[id]?.workDirectory ?? configuration.dataDirectory
        let payloads = plans.map {
            SegmentPayload(index: $0.index, packets: $0.packets, path: "\(workDirectory)/src-\($0.index).pkt")
        }
        let paths = Dictionary(uniqueKeysWithValues: payloads.map { ($0.index, $0.path) })
        let segmentCount = state.jobs[id]?.segments.count ?? 0
        async let split: Void = Offload.run("split \(id)") { threadFlag in
            defer { readyContinuation.finish() }
            guard !payloads.isEmpty else { return }
            let sums = ChecksumTable(count: segmentCount)
            try SegmentSplitter.split(
                path: source, index: index, payloads: payloads,
                observer: { i in { sums.update(i, $0) } },
                written: { i, bytes in readyContinuation.yield((i, paths[i]!, bytes, sums.finalize(i))) },
                isCancelled: { threadFlag.isCancelled || flag.isCancelled })
        }
        for await (segment, path, bytes, checksum) in ready {
            apply(state.segmentSplit(id, index: segment, path: path, bytes: bytes, checksum: checksum, now: now))
        }
        try await split
    }

    /// The local path of a job's source: the path itself, or its URL downloaded into the work directory.
    private func fetchSource(_ id: String, _ source: String, into directory: String, cancel: CancellationFlag) async throws -> String {
        guard SourceURL.isURL(source) else { return source }
        let url = try SourceURL(source, policy: configuration.downloads)
        let progress = DownloadProgress()
        downloadProgress[id] = progress
        apply(state.setPhase(id, "downloading"))
        let path = try await SourceDownloader.fetch(
            url, into: directory, policy: configuration.downloads, progress: progress, cancel: cancel)
        logger.info("source downloaded", metadata: ["job": "\(id)", "bytes": "\(progress.snapshot.bytes)"])
        return path
    }

    static func temporaryPath(for output: String, id: String) -> String {
        let url = URL(fileURLWithPath: output)
        let directory = url.deletingLastPathComponent().path
        return "\(directory)/.\(url.deletingPathExtension().lastPathComponent).farm-tmp-\(id).\(url.pathExtension)"
    }

    /// Waits until every segment is done, or the job ends, or the coordinator stops. Cancelling
    /// this task ends the wait only.
    private func waitForSegments(_ id: String) async {
        guard !stopping, let job = state.jobs[id], job.state == .running, !job.allSegmentsDone else { return }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                segmentsWaiters[id] = continuation
            }
        } onCancel: {
            Task { await self.wakeSegmentsWaiter(id) }
        }
    }

    private func wakeSegmentsWaiter(_ id: String) { segmentsWaiters.removeValue(forKey: id)?.resume() }

    /// Free bytes on the data directory's volume, nil when it cannot be read.
    private func freeBytes() -> Int64? {
        var stats = statvfs()
        guard statvfs(configuration.dataDirectory, &stats) == 0 else { return nil }
        let (free, overflow) = Int64(clamping: stats.f_bavail).multipliedReportingOverflow(by: Int64(clamping: stats.f_frsize))
        return overflow ? Int64.max : free
    }
}

enum OutputPublisher {
    /// Moves a verified output into place durably: the file's bytes reach the disk, then the rename,
    /// then the directory entry, before the job is reported done (a power cut after "done" cannot
    /// leave an empty or missing output).
    static func publish(_ temporary: String, as output: String) throws {
        func failure(_ what: String) -> CoordinatorError {
            CoordinatorError(.io, "\(output): cannot \(what): \(String(cString: strerror(errno)))")
        }
        let file = open(temporary, O_RDONLY | O_CLOEXEC)
        guard file >= 0 else { throw failure("open the verified output") }
        let synced = fsync(file) == 0
        close(file)
        guard synced else { throw failure("write the verified output to disk") }
        guard rename(temporary, output) == 0 else { throw failure("move the verified output into place") }
        let parent = (output as NSString).deletingLastPathComponent
        let directory = open(parent.isEmpty ? "." : parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else { throw failure("open the output's directory") }
        defer { close(directory) }
        guard fsync(directory) == 0 else { throw failure("write the output's directory entry to disk") }
    }
}

/// Running checksums of the segments being written, updated on the split thread.
private final class ChecksumTable: @unchecked Sendable {
    private var sums: [SegmentChecksum]
    init(count: Int) { sums = Array(repeating: SegmentChecksum(), count: count) }
    func update(_ i: Int, _ bytes: UnsafeRawBufferPointer) { sums[i].update(bytes) }
    func finalize(_ i: Int) -> [UInt8] { sums[i].finalize() }
}

extension EncodeSettings {
    init(_ c: EncoderConfig) {
        self.init(
            codec: c.codec.rawValue, encoder: c.encoder, crf: Int32(c.crf), preset: c.preset, pixelFormat: c.pixelFormat,
            width: Int32(c.width), height: Int32(c.height), timeBaseNum: c.timeBase.num, timeBaseDen: c.timeBase.den,
            frameRateNum: c.frameRate.num, frameRateDen: c.frameRate.den, sampleAspectNum: c.sampleAspectRatio.num,
            sampleAspectDen: c.sampleAspectRatio.den, colorRange: Int32(c.colorRange),
            colorPrimaries: Int32(c.colorPrimaries), colorTransfer: Int32(c.colorTransfer),
            colorSpace: Int32(c.colorSpace), chromaLocation: Int32(c.chromaLocation), gopSize: Int32(c.gopSize),
            threads: Int32(c.threads), options: c.options)
    }
}
