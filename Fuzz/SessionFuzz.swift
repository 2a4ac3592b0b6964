// libFuzzer target: the coordinator's handling of a node's messages after the handshake (Sources/Coordinator).
//
// Built by scripts/fuzz.sh together with every source of Sources/Coordinator, so it drives the real
// `NodeMessageHandler` (what `NodeSession` runs once the join proof checked out) against a real `Coordinator`
// actor and its `FarmState`: no socket, no job store. For each input a fresh coordinator gets a running job of
// three ready segments (their work directory a temporary one) and a node joins it as `NodeSession` registers one
// after a valid handshake; the scheduler leases it two segments. The input is then read as a sequence of
// hostile messages: results for held and unheld tasks, with extreme integers in every field (2^64-1 frames,
// byteLength and task IDs, Int64 boundaries), data before its result and past its length, results whose bytes
// and checksum agree (so that the stream header check runs on them), duplicate results, heartbeats with huge
// or falling progress, failures of every kind, drains, and messages a node may not send, interleaved as the
// input says. What must hold for any input: nothing traps (a violation is a thrown error, which closes that
// connection only), and the session ends with the node unregistered and no result file left behind that the
// state does not own.

import FarmProtocol
import Foundation
import Logging
import NIOCore

private let workRoot: String = {
    let path = NSTemporaryDirectory() + "farm-session-fuzz-\(getpid())"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}()

/// Reads the fuzz input front to back; past its end every read is 0.
private struct Reader {
    let bytes: [UInt8]
    var offset = 0
    var atEnd: Bool { offset >= bytes.count }

    mutating func byte() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func raw64() -> UInt64 { (0..<8).reduce(0) { value, _ in value << 8 | UInt64(byte()) } }

    /// An integer that is an extreme more often than not; `near` is the value an honest node would send.
    mutating func integer(near: UInt64) -> UInt64 {
        switch byte() % 12 {
        case 0: 0
        case 1: 1
        case 2: UInt64.max
        case 3: UInt64.max - 1
        case 4: UInt64(Int64.max)
        case 5: UInt64(Int64.max) + 1
        case 6: UInt64(UInt32.max)
        case 7: UInt64(Int.max / 2)
        case 8: near &+ 1
        case 9: near == 0 ? 0 : near - 1
        case 10: raw64()
        default: near
        }
    }
}

/// One step of a hostile node: a message, or the coordinator's 1 s tick between two messages.
private enum Step {
    case message(Message)
    case tick
}

/// The node's side of the connection as `NodeMessageHandler` reads it: the steps in order, ticks run in between.
private struct Script: AsyncIteratorProtocol {
    var steps: ArraySlice<Step>
    let coordinator: Coordinator

    mutating func next() async throws -> Message? {
        while let step = steps.popFirst() {
            switch step {
            case .message(let message): return message
            case .tick: await coordinator.fuzzTick()
            }
        }
        return nil
    }
}

extension Coordinator {
    /// A running job of three ready segments of 100 frames each, writing its results under `directory`.
    func fuzzJob(in directory: String) {
        let id = "fuzz"
        state.jobQueued(
            id: id, request: JobRequest(source: "\(directory)/in.mp4", output: "\(directory)/out.mp4"),
            workDirectory: directory, now: now)
        apply(state.jobStarted(id))
        let settings = EncodeSettings(
            codec: "h264", encoder: "libx264", crf: 30, preset: "ultrafast", pixelFormat: "yuv420p", width: 64,
            height: 64, timeBaseNum: 1, timeBaseDen: 25, frameRateNum: 25, frameRateDen: 1)
        let plans = (0..<3).map { SegmentPlan(index: $0, uniformFrames: 100) }
        apply(
            state.jobPlanned(
                id, segments: plans.map { FarmState.Segment(plan: $0) }, segmentSeconds: [4, 4, 4], settings: settings,
                parameters: nil, totalFrames: 300, sourceSeconds: 12, now: now))
        for index in 0..<3 {
            apply(state.segmentSplit(id, index: index, path: "\(directory)/src-\(index).pkt", bytes: 1000, checksum: [1], now: now))
        }
    }

    func fuzzTick() { apply(state.tick(now: now)) }
}

/// The messages a hostile node chooses, read from the input.
private func script(_ reader: inout Reader, held: [Assign], hello: Hello) -> [Step] {
    var steps: [Step] = []
    var pendingData: [UInt64: [UInt8]] = [:]
    while !reader.atEnd, steps.count < 512 {
        let pick = held.isEmpty ? nil : held[Int(reader.byte()) % held.count]
        let honestID = pick?.taskID ?? 1
        let frames = pick?.expectedFrames ?? 100
        let taskID = reader.byte() % 2 == 0 ? honestID : reader.integer(near: honestID)
        switch reader.byte() % 9 {
        case 0:  // a result announcing anything
            let result = TaskResult(
                taskID: taskID, encoder: "libx264", frames: reader.integer(near: frames),
                byteLength: reader.integer(near: 64), checksum: [UInt8](repeating: reader.byte(), count: 16),
                decodeSeconds: Double(reader.byte()), encodeSeconds: -Double(reader.byte()))
            steps.append(.message(.result(result)))
        case 1:  // a result whose bytes will match its checksum: the stream header check runs on them
            let count = Int(reader.byte()) + 1
            let bytes = (0..<count).map { _ in reader.byte() }
            var sum = SegmentChecksum()
            bytes.withUnsafeBytes { sum.update($0) }
            pendingData[taskID] = bytes
            let result = TaskResult(
                taskID: taskID, encoder: "libx264", frames: frames, byteLength: UInt64(count), checksum: sum.finalize(),
                decodeSeconds: 1, encodeSeconds: 1)
            steps.append(.message(.result(result)))
        case 2:  // that result's bytes in two chunks (an empty data frame when there is no such result)
            let bytes = pendingData.removeValue(forKey: taskID) ?? []
            let cut = bytes.isEmpty ? 0 : Int(reader.byte()) % bytes.count
            let parts = bytes.isEmpty ? [bytes[...]] : [bytes[..<cut], bytes[cut...]].filter { !$0.isEmpty }
            for part in parts {
                steps.append(.message(.data(DataChunk(taskID: taskID, bytes: ByteBuffer(bytes: Array(part))))))
            }
        case 3:  // data of any length for any task
            let bytes = (0..<Int(reader.byte() % 64)).map { _ in reader.byte() }
            steps.append(.message(.data(DataChunk(taskID: taskID, bytes: ByteBuffer(bytes: bytes)))))
        case 4:  // progress beyond the segment's frames, falling progress, unknown tasks
            var tasks: [TaskProgress] = []
            for _ in 0..<Int(reader.byte() % 4) {
                let id = reader.byte() % 2 == 0 ? honestID : reader.integer(near: honestID)
                tasks.append(TaskProgress(taskID: id, framesDone: reader.integer(near: frames / 2)))
            }
            steps.append(.message(.heartbeat(Heartbeat(activeTasks: tasks))))
        case 5:
            let kind = TaskFailure.Kind(rawValue: reader.byte() % 3) ?? .segment
            let retryable = reader.byte() % 2 == 0
            steps.append(.message(.failure(TaskFailure(taskID: taskID, reason: "fuzz", retryable: retryable, kind: kind))))
        case 6:
            steps.append(.message(.drain))
        case 7:  // what only a coordinator sends, or a second hello
            switch reader.byte() % 3 {
            case 0: steps.append(.message(.cancel(taskID: taskID)))
            case 1: steps.append(.message(.hello(hello)))
            default: steps.append(.message(.reject(Reject(reason: "fuzz"))))
            }
        default:
            steps.append(.tick)
        }
    }
    return steps
}

private func runSession(_ input: [UInt8]) async {
    let directory = workRoot + "/job"
    try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    var logger = Logger(label: "fuzz")
    logger.logLevel = .critical
    var configuration = CoordinatorConfiguration(
        dataDirectory: workRoot, joinToken: String(repeating: "t", count: 32), nodeSecurity: .insecurePlainTCP,
        logger: logger)
    configuration.maxNodeSlots = 4
    let coordinator = Coordinator(configuration: configuration)
    await coordinator.fuzzJob(in: directory)

    // What `NodeSession` does once the hello's proof checked out: the node is registered and leased work.
    var reader = Reader(bytes: input)
    let slots = UInt16(reader.byte() % 6)  // 0, and more than the cap, included
    let (outgoing, continuation) = AsyncStream<Outgoing>.makeStream()
    let hello = Hello(nodeID: "fuzz-node", proof: [], slots: slots, threads: UInt16.max, capabilitiesJSON: "{}")
    let session = await coordinator.register(hello, address: "10.0.0.9", outgoing: continuation)
    continuation.finish()
    var held: [Assign] = []
    for await item in outgoing {
        if case .segment(let assign, _) = item { held.append(assign) }
    }

    var iterator = Script(steps: script(&reader, held: held, hello: hello)[...], coordinator: coordinator)
    var receivers: [UInt64: NodeSession.Receiver] = [:]
    do {
        try await NodeMessageHandler(coordinator: coordinator, channel: nil).serve(
            &iterator, &receivers, session: session, nodeID: hello.nodeID, logger: logger)
    } catch {
        // A violation: the connection would close here.
    }
    await NodeMessageHandler.abandon(receivers)
    await coordinator.unregister(session, reason: "fuzz input ended")
    if let files = try? FileManager.default.contentsOfDirectory(atPath: directory) {
        for file in files { try? FileManager.default.removeItem(atPath: directory + "/" + file) }
    }
}

/// The end of one input's run, waited for on libFuzzer's thread (not a thread of the concurrency pool).
private final class Finished: @unchecked Sendable {
    private let condition = NSCondition()
    private var done = false

    func signal() {
        condition.lock()
        done = true
        condition.signal()
        condition.unlock()
    }

    func wait() {
        condition.lock()
        while !done { condition.wait() }
        condition.unlock()
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func farmSessionFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let finished = Finished()
    Task {
        await runSession(input)
        finished.signal()
    }
    finished.wait()
    return 0
}
