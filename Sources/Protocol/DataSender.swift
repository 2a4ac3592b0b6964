public import NIOCore

/// Sends the bytes of a transfer as ``Message/data(_:)`` frames, with a bounded number of them in memory.
///
/// `NIOAsyncChannelOutboundWriter` suspends a writer only once the channel reports itself unwritable. That happens
/// on the event loop, after the bytes went through TLS and filled the socket's send buffer; until then each write
/// returns as soon as it is queued for the event loop. A sender that reads a file faster than the event loop
/// encrypts and writes therefore queued most of a segment in memory: the coordinator's private memory rose by
/// about a segment's size each time it sent one, so its peak grew with the input's length.
///
/// This sender writes each chunk through the channel and keeps the write's future; before it reads another chunk
/// it waits for the write `window` chunks back to reach the socket. At most `window` chunks are held per transfer,
/// whatever the segment's size; the next chunk is read while earlier ones are sent, so the connection stays busy.
///
/// Writes go through the whole pipeline like the async outbound writer's. A message written with that writer
/// before ``send(taskID:byteLength:over:window:mayContinue:read:)`` is called reaches the pipeline first: the
/// writer returns only once its message was handed to the event loop, and this sender's writes are queued on the
/// same event loop after it.
public enum DataSender {
    /// The default number of chunks in flight per transfer: 4 MiB with ``FarmWire/dataChunkSize``.
    public static let defaultWindow = 4

    /// Reads `byteLength` bytes with `read` in chunks of at most `chunkSize` and sends them for `taskID`.
    ///
    /// Cancelling the calling task closes the channel: a write that waits for a peer that stopped reading would
    /// otherwise never end, and the peer could not tell a transfer that stops halfway from a slow one.
    ///
    /// Each chunk is read into one of `window` buffers that the transfer keeps: once a chunk's write has reached the
    /// socket the channel no longer holds its buffer, and the next chunk read into it reuses its memory. A fresh
    /// buffer for every chunk would cost a 1 MiB allocation each time, which the allocator maps and unmaps, and the
    /// page faults of filling it: about a fifth of the CPU of a loopback transfer.
    ///
    /// - Parameters:
    ///   - mayContinue: Asked before each chunk; when it answers false the transfer stops.
    ///   - read: Replaces the contents of `buffer` with up to `length` bytes at `offset` (see
    ///     ``ChunkFile/read(at:length:into:)``); leaving it empty means the end of the data.
    /// - Returns: The number of bytes sent, or nil when `mayContinue` stopped the transfer.
    /// - Throws: The first failed write or read, or `CancellationError`.
    public static func send(
        taskID: UInt64, byteLength: Int64, over channel: any Channel, window: Int = defaultWindow,
        chunkSize: Int = FarmWire.dataChunkSize, mayContinue: () -> Bool = { true },
        read: (_ offset: Int64, _ length: Int, _ buffer: inout ByteBuffer) async throws -> Void
    ) async throws -> Int64? {
        precondition(window >= 1 && chunkSize >= 1, "window and chunkSize must be at least 1")
        var inFlight: [EventLoopFuture<Void>] = []
        inFlight.reserveCapacity(window)
        /// The chunk buffers, one per write in `inFlight` at the same index.
        var buffers: [ByteBuffer] = []
        buffers.reserveCapacity(window)
        var oldest = 0
        var sent: Int64 = 0
        /// Waits for a write; cancellation closes the channel, which fails the write.
        func wait(_ write: EventLoopFuture<Void>) async throws {
            try await withTaskCancellationHandler {
                try await write.get()
            } onCancel: {
                channel.close(promise: nil)
            }
        }
        while sent < byteLength {
            guard mayContinue() else { return nil }
            if Task.isCancelled {
                channel.close(promise: nil)
                throw CancellationError()
            }
            // With the ring full, the oldest write must reach the socket before another chunk is read.
            if inFlight.count == window { try await wait(inFlight[oldest]) }
            let slot = inFlight.count < window ? inFlight.count : oldest
            if slot == buffers.count { buffers.append(channel.allocator.buffer(capacity: 0)) }
            try await read(sent, Int(min(Int64(chunkSize), byteLength - sent)), &buffers[slot])
            let chunk = buffers[slot]
            guard chunk.readableBytes > 0 else { break }
            sent += Int64(chunk.readableBytes)
            let written = channel.eventLoop.makePromise(of: Void.self)
            channel.writeAndFlush(Message.data(DataChunk(taskID: taskID, bytes: chunk)), promise: written)
            let write = written.futureResult
            if inFlight.count < window {
                inFlight.append(write)
            } else {
                inFlight[oldest] = write
                oldest = (oldest + 1) % window
            }
        }
        for index in 0..<inFlight.count {
            try await wait(inFlight[(oldest + index) % inFlight.count])
        }
        return sent
    }

    /// Sends the first `byteLength` bytes of the file at `path` for `taskID`, as
    /// ``send(taskID:byteLength:over:window:chunkSize:mayContinue:read:)`` does, reading it with ``ChunkFile``.
    ///
    /// - Returns: The number of bytes sent (fewer than `byteLength` when the file is shorter), or nil when
    ///   `mayContinue` stopped the transfer.
    /// - Throws: `IOError` when the file cannot be opened or read, the first failed write, or `CancellationError`.
    public static func sendFile(
        atPath path: String, taskID: UInt64, byteLength: Int64, over channel: any Channel,
        mayContinue: () -> Bool = { true }
    ) async throws -> Int64? {
        let file = try await ChunkFile.open(path)
        defer { file.close() }
        return try await send(taskID: taskID, byteLength: byteLength, over: channel, mayContinue: mayContinue) {
            try await file.read(at: $0, length: $1, into: &$2)
        }
    }
}
