import Foundation
import FarmHWEncode
import FarmMedia
import FarmProtocol
import Logging
import NIOCore
import NIOFileSystem
import Synchronization

/// A connection after the handshake: it receives segments, encodes them in slots, reports results and
/// heartbeats, and drains.
///
/// One task reads the coordinator's messages (``serve(_:wakeups:)``); each task that is encoding or sending runs in
/// a child task of the connection's task group, as do the heartbeat and the drain listener. Every frame goes out
/// through the one `NIOAsyncChannelOutboundWriter`, which takes whole messages from several tasks at once: frames
/// never interleave, each task writes its own data chunks in order, and writes wait while the socket is not
/// writable, so memory stays flat.
final class Connection: Sendable {
    /// How long the coordinator has to close its side after the node finished its own.
    static let closeGrace = TimeAmount.seconds(5)

    let configuration: NodeConfiguration
    let logger: Logger
    let channel: any Channel
    let outbound: NIOAsyncChannelOutboundWriter<Message>
    let heartbeatInterval: Duration
    let state: Mutex<ConnectionState>
    /// Test-only (`FARM_TEST_STALL`): this connection holds a segment without encoding it and sends no heartbeat.
    let stall = StallFlag()

    /// A segment whose bytes are arriving. Owned by the read loop.
    private struct Transfer {
        let assign: Assign
        let file: IncomingFile
        var received: UInt64 = 0
        var checksum = SegmentChecksum()
    }

    /// What a finished encode hands back from its thread.
    private struct Encoded: Sendable {
        var report: SegmentEncodeReport
        var byteLength: UInt64
        var checksum: [UInt8]
    }

    init(
        configuration: NodeConfiguration, logger: Logger, channel: any Channel,
        outbound: NIOAsyncChannelOutboundWriter<Message>, heartbeatSeconds: UInt32
    ) {
        self.configuration = configuration
        self.logger = logger
        self.channel = channel
        self.outbound = outbound
        self.heartbeatInterval = .seconds(Int64(max(1, heartbeatSeconds)))
        self.state = Mutex(ConnectionState(slots: configuration.effectiveSlots))
    }

    /// Serves the coordinator until the connection ends; stops and cleans up every task before it returns.
    func serve(_ iterator: inout Session.Inbound, wakeups: AsyncStream<Void>) async -> SessionEnd {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.sendHeartbeats() }
            group.addTask {
                for await _ in wakeups {
                    await self.requestDrain(origin: "local")
                }
            }
            let end = await self.readLoop(&iterator, group: &group)
            group.cancelAll()
            return end
        }
    }

    // MARK: - Reading

    private func readLoop(_ iterator: inout Session.Inbound, group: inout DiscardingTaskGroup) async -> SessionEnd {
        var transfers: [UInt64: Transfer] = [:]
        // Refused or cancelled transfers: the bytes still to come, which are dropped.
        var discarding: [UInt64: UInt64] = [:]
        var failure: String? = nil

        while true {
            let message: Message?
            do {
                message = try await iterator.next()
            } catch {
                failure = "the connection failed: \(error)"
                break
            }
            guard let message else { break }
            if self.state.withLock({ $0.isClosing }) {
                self.logger.debug("ignoring a message while closing", metadata: ["message": "\(message.name)"])
                continue
            }
            switch message {
            case .assign(let assign):
                await self.accept(assign, transfers: &transfers, discarding: &discarding, group: &group)
            case .data(let chunk):
                await self.receive(chunk, transfers: &transfers, discarding: &discarding, group: &group)
            case .cancel(let taskID):
                if let transfer = transfers.removeValue(forKey: taskID) {
                    transfer.file.close()
                    SegmentFiles.remove(transfer.file.path)
                    let remaining = transfer.assign.byteLength - transfer.received
                    if remaining > 0 { discarding[taskID] = remaining }
                }
                let (stage, next) = self.state.withLock { $0.cancel(taskID) }
                if let stage {
                    self.logger.info("task cancelled by the coordinator", metadata: ["task": "\(taskID)", "stage": "\(stage)"])
                } else {
                    self.logger.debug("cancel for a task the node does not hold", metadata: ["task": "\(taskID)"])
                }
                await self.perform(next)
            case .drain:
                await self.requestDrain(origin: "coordinator")
            case .reject(let reject):
                self.logger.warning("the coordinator closes the connection", metadata: ["reason": "\(reject.reason)"])
                await self.close(reason: "the coordinator closed the connection: \(reject.reason)", sending: [])
            case .challenge, .hello, .welcome, .result, .failure, .heartbeat:
                await self.violation("unexpected \(message.name) after the handshake")
            }
        }

        // Whatever is still arriving is abandoned.
        for transfer in transfers.values {
            transfer.file.close()
            SegmentFiles.remove(transfer.file.path)
        }
        let end: SessionEnd = self.state.withLock { state in
            if case .closing(_, drained: true) = state.phase { return .drained }
            if Task.isCancelled { return .cancelled }
            if case .closing(let reason, drained: false) = state.phase { return .lost(reason) }
            return .lost(failure ?? "the coordinator closed the connection")
        }
        // Stop the encodes still running; their tasks remove their own files.
        let stopped = self.state.withLock { $0.close(reason: "the connection ended") }?.count ?? 0
        if stopped > 0 {
            self.logger.info("stopping tasks of the lost connection", metadata: ["tasks": "\(stopped)"])
        }
        return end
    }

    private func accept(
        _ assign: Assign, transfers: inout [UInt64: Transfer], discarding: inout [UInt64: UInt64],
        group: inout DiscardingTaskGroup
    ) async {
        let logger = self.taskLogger(assign)
        switch self.state.withLock({ $0.admit(assign.taskID) }) {
        case .violation(let reason):
            await self.violation(reason)
            return
        case .refused(let reason):
            logger.info("task refused", metadata: ["reason": "\(reason)"])
            if assign.byteLength > 0 { discarding[assign.taskID] = assign.byteLength }
            await self.send(.failure(TaskFailure(taskID: assign.taskID, reason: reason, retryable: true, kind: .refused)))
            return
        case .accepted:
            break
        }

        let file: IncomingFile
        do {
            file = try await IncomingFile.create(
                path: SegmentFiles.sourcePath(self.configuration.workDirectory, taskID: assign.taskID))
        } catch {
            logger.error("cannot store the segment", metadata: ["error": "\(error)"])
            if assign.byteLength > 0 { discarding[assign.taskID] = assign.byteLength }
            let next = self.state.withLock { $0.release(assign.taskID) }
            await self.send(
                .failure(TaskFailure(taskID: assign.taskID, reason: "cannot store the segment: \(error)", retryable: true, kind: .node)))
            await self.perform(next)
            return
        }
        logger.info(
            "task assigned",
            metadata: [
                "bytes": "\(assign.byteLength)", "expectedFrames": "\(assign.expectedFrames)",
                "encoder": "\(assign.settings.encoder)",
            ])
        let transfer = Transfer(assign: assign, file: file)
        if assign.byteLength == 0 {
            await self.complete(transfer, group: &group)
        } else {
            transfers[assign.taskID] = transfer
        }
    }

    private func receive(
        _ chunk: DataChunk, transfers: inout [UInt64: Transfer], discarding: inout [UInt64: UInt64],
        group: inout DiscardingTaskGroup
    ) async {
        let taskID = chunk.taskID
        let count = UInt64(chunk.bytes.readableBytes)
        guard var transfer = transfers[taskID] else {
            if let remaining = discarding[taskID] {
                if count >= remaining {
                    discarding.removeValue(forKey: taskID)
                } else {
                    discarding[taskID] = remaining - count
                }
                return
            }
            await self.violation("data for task \(taskID), which has no transfer in progress")
            return
        }
        let announced = transfer.assign.byteLength
        guard count <= announced - transfer.received else {
            await self.violation(
                "task \(taskID) sent \(transfer.received + count) bytes, more than its announced \(announced)")
            return
        }

        do {
            try await transfer.file.write(chunk.bytes, at: Int64(transfer.received))
        } catch {
            transfers.removeValue(forKey: taskID)
            transfer.file.close()
            SegmentFiles.remove(transfer.file.path)
            let remaining = announced - transfer.received - count
            if remaining > 0 { discarding[taskID] = remaining }
            self.taskLogger(transfer.assign).error("cannot store the segment", metadata: ["error": "\(error)"])
            let next = self.state.withLock { $0.release(taskID) }
            await self.send(
                .failure(TaskFailure(taskID: taskID, reason: "cannot store the segment: \(error)", retryable: true, kind: .node)))
            await self.perform(next)
            return
        }
        transfer.checksum.update(chunk.bytes)
        transfer.received += count
        self.logger.debug(
            "segment chunk received",
            metadata: ["task": "\(taskID)", "bytes": "\(count)", "received": "\(transfer.received)/\(announced)"])

        if transfer.received == announced {
            transfers.removeValue(forKey: taskID)
            await self.complete(transfer, group: &group)
        } else {
            transfers[taskID] = transfer
        }
    }

    /// All of a segment's bytes are there: check them, then start the encode.
    private func complete(_ transfer: Transfer, group: inout DiscardingTaskGroup) async {
        transfer.file.close()
        let assign = transfer.assign
        let actual = transfer.checksum.finalize()
        guard actual == assign.checksum else {
            SegmentFiles.remove(transfer.file.path)
            let reason =
                "segment checksum mismatch for task \(assign.taskID): expected \(Hex.encode(assign.checksum)), "
                + "got \(Hex.encode(actual)) over \(transfer.received) bytes"
            self.taskLogger(assign).error("closing the connection", metadata: ["reason": "\(reason)"])
            // Closing (not releasing the slot first): a release could end a drain and close without the failure.
            await self.close(
                reason: reason, sending: [.failure(TaskFailure(taskID: assign.taskID, reason: reason, retryable: true, kind: .node))])
            return
        }
        if self.configuration.testFaults.stalls.take() {
            self.stall.set()
            self.taskLogger(assign).warning("test fault (FARM_TEST_STALL): holding the segment; heartbeats stop")
            SegmentFiles.remove(transfer.file.path)
            return
        }
        guard let flag = self.state.withLock({ $0.beginEncoding(assign.taskID) }) else {
            SegmentFiles.remove(transfer.file.path)
            return
        }
        group.addTask { await self.runTask(assign, flag: flag) }
    }

    /// `FARM_TEST_SLOW_NODE=NODE_ID:FACTOR`: a benchmark-only switch that slows one node down by a
    /// factor, to measure scheduling with nodes of unequal speed on one machine.
    static func slowdown(nodeID: String, switch value: String?) -> Double? {
        guard let value else { return nil }
        let parts = value.split(separator: ":")
        guard parts.count == 2, String(parts[0]) == nodeID else { return nil }
        return Double(parts[1])
    }

    // MARK: - Tasks

    /// Encodes one segment on a thread of its own, then sends the result and the encoded bytes.
    private func runTask(_ assign: Assign, flag: CancellationFlag) async {
        let taskID = assign.taskID
        var logger = self.taskLogger(assign)
        let input = SegmentFiles.sourcePath(self.configuration.workDirectory, taskID: taskID)
        let output = SegmentFiles.encodedPath(self.configuration.workDirectory, taskID: taskID)
        defer {
            SegmentFiles.remove(input)
            SegmentFiles.remove(output)
        }
        let clock = ContinuousClock()
        let started = clock.now

        let encoded: Encoded
        do {
            if self.configuration.testFaults.failedTasks.take() {
                throw MediaError(.verificationFailed, "injected encode failure (FARM_TEST_FAIL_TASKS)")
            }
            var made = try SegmentFiles.request(
                for: assign, input: input, output: output, threads: self.configuration.threads)
            if self.configuration.testFaults.wrongPictures.take() {
                made.invertPictures = true
                logger.warning("test fault (FARM_TEST_WRONG_PICTURES): encoding inverted pictures")
            }
            let request = made
            logger[metadataKey: "encoder"] = "\(request.config.encoder)"
            logger.info("encoding segment", metadata: ["expectedFrames": "\(assign.expectedFrames)"])
            let chooser = self.configuration.chooser ?? EncoderChooser(report: .empty, mode: .off)
            let slowdown = Self.slowdown(nodeID: self.configuration.nodeID, switch: self.configuration.testFaults.slowNode)
            let faults = self.configuration.testFaults
            let attempts = try chooser.attempts(for: request.config)
            encoded = try await Offload.run("encode task \(taskID)") { [logger] offload in
                let isCancelled = { offload.isCancelled || flag.isCancelled }
                let report = try SegmentEncoder.encode(
                    request, attempts: attempts, cooldown: chooser.cooldown,
                    progress: { frames in self.state.withLock { $0.progress(taskID, frames: frames) } },
                    isCancelled: isCancelled)
                if let factor = slowdown, factor > 1 {
                    // Benchmark-only (FARM_TEST_SLOW_NODE): this node behaves as one `factor` times slower.
                    let extra = (report.decodeSeconds + report.encodeSeconds) * (factor - 1)
                    var waited = 0.0
                    while waited < extra, !isCancelled() {
                        usleep(20_000)
                        waited += 0.02
                    }
                }
                let file = try SegmentFiles.sizeAndChecksum(of: output, isCancelled: isCancelled)
                try faults.corruptResultIfDue(at: output, size: file.size, logger: logger)
                return Encoded(report: report, byteLength: file.size, checksum: file.checksum)
            }
        } catch {
            await self.failed(assign, error: error, flag: flag, logger: logger)
            return
        }

        guard self.state.withLock({ $0.beginSending(taskID) }) else {
            logger.info("task stopped; its result is not sent")
            await self.perform(self.state.withLock { $0.release(taskID) })
            return
        }
        let report = encoded.report
        let result = TaskResult(
            taskID: taskID, encoder: report.encoder, frames: UInt64(report.frames), byteLength: encoded.byteLength,
            checksum: encoded.checksum, decodeSeconds: report.decodeSeconds, encodeSeconds: report.encodeSeconds,
            fallbackReason: report.fallbackReason)
        if let reason = report.fallbackReason {
            logger.warning("hardware encoder failed; segment re-encoded in software", metadata: ["reason": "\(reason)"])
        }
        do {
            try await self.write(.result(result))
            let complete = try await self.sendFile(output, taskID: taskID, byteLength: encoded.byteLength)
            if complete {
                logger.info(
                    "task finished",
                    metadata: [
                        "frames": "\(report.frames)", "encoder": "\(report.encoder)", "bytes": "\(encoded.byteLength)",
                        "decodeSeconds": "\(rounded(report.decodeSeconds))",
                        "encodeSeconds": "\(rounded(report.encodeSeconds))",
                        "seconds": "\(rounded((clock.now - started).seconds))",
                    ])
            } else {
                logger.info("task stopped while its result was being sent")
            }
        } catch {
            if self.state.withLock({ $0.maySend(taskID) }) {
                // The coordinator holds a result whose bytes will not all come; only closing tells it so.
                logger.error("cannot send the result; closing the connection", metadata: ["error": "\(error)"])
                await self.close(reason: "cannot send the result of task \(taskID): \(error)", sending: [])
            } else {
                logger.info("task stopped while its result was being sent")
            }
        }
        await self.perform(self.state.withLock { $0.release(taskID) })
    }

    /// Sends a file as data chunks for a task, stopping early if the task is cancelled.
    ///
    /// - Returns: Whether every byte was sent.
    private func sendFile(_ path: String, taskID: UInt64, byteLength: UInt64) async throws -> Bool {
        // Paced: at most a few chunks of the result in memory, however long the segment is.
        let sent = try await DataSender.sendFile(
            atPath: path, taskID: taskID, byteLength: Int64(byteLength), over: self.channel,
            mayContinue: { self.state.withLock { $0.maySend(taskID) } })
        guard let sent else { return false }
        guard sent == Int64(byteLength) else {
            throw MediaError(.io, "\(path) holds \(sent) bytes, \(byteLength) were announced")
        }
        self.logger.debug("result sent", metadata: ["task": "\(taskID)", "bytes": "\(sent)"])
        return true
    }

    /// An encode threw: report it unless the task was stopped.
    private func failed(_ assign: Assign, error: any Error, flag: CancellationFlag, logger: Logger) async {
        let taskID = assign.taskID
        if flag.isCancelled || Task.isCancelled || !self.state.withLock({ $0.maySend(taskID) }) {
            logger.info("task stopped", metadata: ["reason": "\(error)"])
        } else {
            let retryable = SegmentFiles.isRetryable(error)
            logger.warning("task failed", metadata: ["reason": "\(error)", "retryable": "\(retryable)"])
            await self.send(.failure(TaskFailure(taskID: taskID, reason: "\(error)", retryable: retryable)))
        }
        await self.perform(self.state.withLock { $0.release(taskID) })
    }

    // MARK: - Heartbeat, drain and close

    private func sendHeartbeats() async {
        while true {
            do {
                try await Task.sleep(for: self.heartbeatInterval)
            } catch {
                return
            }
            if self.stall.isSet { continue }
            guard let tasks = self.state.withLock({ $0.heartbeat() }) else { return }
            do {
                try await self.write(.heartbeat(Heartbeat(activeTasks: tasks)))
            } catch {
                return
            }
            self.logger.trace("heartbeat sent", metadata: ["tasks": "\(tasks.count)"])
        }
    }

    /// A drain was asked for, by the coordinator or locally.
    private func requestDrain(origin: String) async {
        switch self.state.withLock({ $0.drain() }) {
        case .alreadyDraining:
            self.logger.debug("drain requested again", metadata: ["origin": "\(origin)"])
        case .waiting(let tasks):
            self.logger.info(
                "draining: finishing the tasks in hand, taking no new ones",
                metadata: ["origin": "\(origin)", "tasks": "\(tasks)"])
        case .sendDrainAndClose:
            self.logger.info("draining: no task in hand; leaving", metadata: ["origin": "\(origin)"])
            await self.finish(sending: [.drain])
        }
    }

    private func perform(_ next: ConnectionState.Next) async {
        switch next {
        case .nothing:
            return
        case .sendDrainAndClose:
            self.logger.info("drained: every task is reported; leaving")
            await self.finish(sending: [.drain])
        }
    }

    /// The coordinator broke the protocol: tell it why and close.
    private func violation(_ reason: String) async {
        self.logger.error("protocol violation by the coordinator; closing the connection", metadata: ["reason": "\(reason)"])
        await self.close(reason: "protocol violation: \(reason)", sending: [.reject(Reject(reason: reason))])
    }

    /// Closes the connection for `reason`: stops every task, sends `messages`, then ends the node's side.
    private func close(reason: String, sending messages: [Message]) async {
        guard let flags = self.state.withLock({ $0.close(reason: reason) }) else { return }
        if !flags.isEmpty {
            self.logger.info("stopping tasks", metadata: ["tasks": "\(flags.count)", "reason": "\(reason)"])
        }
        await self.finish(sending: messages)
    }

    /// Sends the last messages and shuts down the node's side of the connection once they are written; the read
    /// loop ends when the coordinator closes its side, or after a grace period.
    private func finish(sending messages: [Message]) async {
        for message in messages {
            await self.send(message)
        }
        self.outbound.finish()
        let channel = self.channel
        channel.eventLoop.scheduleTask(in: Self.closeGrace) {
            channel.close(promise: nil)
        }
    }

    /// Writes a message behind whatever is queued, and waits until it reached the socket.
    ///
    /// Not through the async outbound writer: that one waits for the channel to become writable, and while a
    /// result streams (``DataSender`` keeps a few chunks queued) it is not, so heartbeats would wait for the
    /// whole transfer, and the coordinator's lease watchdog would drop a node sending a long result over a slow
    /// link. Here a heartbeat waits for at most the chunks in flight.
    private func write(_ message: Message) async throws {
        try await self.channel.writeAndFlush(message)
    }

    /// Sends a message; a connection that is gone is noticed by the read loop, so errors are only logged here.
    private func send(_ message: Message) async {
        do {
            try await self.write(message)
        } catch {
            self.logger.debug("cannot send", metadata: ["message": "\(message.name)", "error": "\(error)"])
        }
    }

    private func taskLogger(_ assign: Assign) -> Logger {
        var logger = self.logger
        logger[metadataKey: "task"] = "\(assign.taskID)"
        logger[metadataKey: "job"] = "\(assign.jobID)"
        logger[metadataKey: "segment"] = "\(assign.segmentIndex)"
        logger[metadataKey: "attempt"] = "\(assign.attempt)"
        return logger
    }
}

private func rounded(_ seconds: Double) -> Double {
    (seconds * 1000).rounded() / 1000
}
