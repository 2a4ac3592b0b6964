import FarmProtocol
import Logging
import NIOFileSystem
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A render node: it dials the coordinator, proves it holds the join token, then encodes the segments it is
/// assigned, a few at a time, and reports them, until it is drained, rejected or cancelled.
///
/// ```swift
/// let node = RenderNode(configuration: NodeConfiguration(coordinatorHost: "farm.local", joinToken: token))
/// try await node.run()   // call node.drain() on SIGTERM
/// ```
public final class RenderNode: Sendable {
    /// The configuration the node was created with.
    public let configuration: NodeConfiguration

    private let state = Mutex(State())

    /// What the node-level loop shares with ``drain()``.
    private struct State {
        var running = false
        var drainRequested = false
        /// Wakes the current connection (or backoff wait) when a drain is asked for.
        var wakeup: AsyncStream<Void>.Continuation?
    }

    static let initialBackoff = Duration.milliseconds(500)
    static let maximumBackoff = Duration.seconds(10)

    /// Creates a node; nothing happens until ``run()``.
    public init(configuration: NodeConfiguration) {
        self.configuration = configuration
    }

    /// Connects and works until the node is drained by the coordinator or by ``drain()`` (returns normally),
    /// rejected by the coordinator (throws ``NodeError`` with code ``NodeError/Code/rejected`` and the
    /// coordinator's reason), or the task is cancelled (in-flight encodes stop, nothing new starts, and it returns).
    ///
    /// When the connection ends otherwise, the node's in-flight tasks stop and their files are removed; then it
    /// reconnects with backoff if ``NodeConfiguration/reconnect`` is set, and returns if not.
    ///
    /// - Throws: ``NodeError``: ``NodeError/Code/rejected`` or ``NodeError/Code/authenticationFailed`` (never
    ///   retried); without reconnection, the error of a first connection that fails before the coordinator's
    ///   welcome (``NodeError/Code/connectFailed``, ``NodeError/Code/handshakeFailed``, ...);
    ///   ``NodeError/Code/workDirectory`` if the work directory cannot be created.
    public func run() async throws {
        try self.state.withLock { state in
            guard !state.running else {
                throw NodeError(code: .alreadyRunning, message: "node \(self.configuration.nodeID) is already running")
            }
            state.running = true
        }
        defer {
            self.state.withLock { state in
                state.running = false
                state.wakeup?.finish()
                state.wakeup = nil
            }
        }

        var logger = self.configuration.logger
        logger[metadataKey: "node"] = "\(self.configuration.nodeID)"
        logger[metadataKey: "coordinator"] =
            "\(self.configuration.coordinatorHost):\(self.configuration.coordinatorPort)"
        let lock = try await self.prepareWorkDirectory(logger: logger)
        defer {
            // Removed before it is unlocked: the work directory is left empty.
            unlink("\(self.configuration.workDirectory)/.lock")
            close(lock)
        }
        if !self.configuration.insecurePlainTCP, self.configuration.coordinatorKeySHA256 == nil {
            logger.warning(
                """
                no --coordinator-key-sha256: this node trusts any coordinator that holds the join token (pin the \
                coordinator's key with the SHA-256 that `farm keys` prints)
                """)
        }
        if self.configuration.insecurePlainTCP {
            logger.warning(
                """
                dialing the coordinator over plain TCP (--insecure-plain-tcp): segments cross the network \
                unencrypted and the join proof is bound to no certificate
                """)
        }

        var backoff = Self.initialBackoff
        while true {
            let (wakeups, drainRequested) = self.installWakeup()
            if drainRequested {
                logger.info("drain requested; not connecting again")
                return
            }
            if Task.isCancelled {
                logger.info("render node stopped")
                return
            }

            logger.info("connecting to the coordinator")
            do {
                let end = try await Session.run(configuration: self.configuration, logger: logger, wakeups: wakeups)
                switch end {
                case .drained:
                    logger.info("drained; the node has left the farm")
                    return
                case .cancelled:
                    logger.info("render node stopped")
                    return
                case .lost(let reason):
                    logger.warning("connection to the coordinator ended", metadata: ["reason": "\(reason)"])
                    guard self.configuration.reconnect else { return }
                    backoff = Self.initialBackoff
                }
            } catch let error as NodeError {
                if Task.isCancelled {
                    logger.info("render node stopped")
                    return
                }
                if error.code == .rejected || error.code == .authenticationFailed {
                    logger.error("the node cannot join the farm", metadata: ["error": "\(error)"])
                    throw error
                }
                logger.warning("cannot join the farm", metadata: ["error": "\(error)"])
                guard self.configuration.reconnect else { throw error }
            }

            let (backoffWakeups, drainDuringSession) = self.installWakeup()
            if drainDuringSession {
                logger.info("drain requested; not connecting again")
                return
            }
            logger.info("reconnecting", metadata: ["delay": "\(backoff)"])
            if await Self.sleep(backoff, unlessWoken: backoffWakeups) {
                logger.info("drain requested; not connecting again")
                return
            }
            backoff = min(backoff * 2, Self.maximumBackoff)
        }
    }

    /// Asks for a graceful drain (for SIGTERM): in-flight segments finish and their results are sent, no new ones
    /// are taken (an `assign` gets a retryable failure), then the node tells the coordinator it leaves, closes the
    /// connection, and ``run()`` returns. Safe to call from any thread, any number of times.
    public func drain() {
        let first = self.state.withLock { state in
            let first = !state.drainRequested
            state.drainRequested = true
            state.wakeup?.yield()
            return first
        }
        if first {
            var logger = self.configuration.logger
            logger[metadataKey: "node"] = "\(self.configuration.nodeID)"
            logger.info("drain requested")
        }
    }

    /// Installs a fresh wakeup stream for the next connection or wait; says whether a drain is already asked for.
    private func installWakeup() -> (AsyncStream<Void>, drainRequested: Bool) {
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let drainRequested = self.state.withLock { state in
            state.wakeup?.finish()
            state.wakeup = continuation
            if state.drainRequested { continuation.yield() }
            return state.drainRequested
        }
        return (stream, drainRequested)
    }

    /// Sleeps for `delay`, or less if woken; returns whether it was woken (a drain was asked for).
    private static func sleep(_ delay: Duration, unlessWoken wakeups: AsyncStream<Void>) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                try? await Task.sleep(for: delay)
                return false
            }
            group.addTask {
                for await _ in wakeups { return true }
                return false
            }
            let woken = await group.next() ?? false
            group.cancelAll()
            return woken
        }
    }

    /// Creates the work directory and locks it for this node: two nodes sharing one (the same `--node-id` on one
    /// machine) would overwrite each other's segment files, whose names are the coordinator's task numbers.
    ///
    /// - Returns: The descriptor holding the lock; closing it releases the lock.
    private func prepareWorkDirectory(logger: Logger) async throws -> CInt {
        let directory = self.configuration.workDirectory
        do {
            try await FileSystem.shared.createDirectory(
                at: FilePath(directory), withIntermediateDirectories: true, permissions: nil)
        } catch {
            throw NodeError(code: .workDirectory, message: "cannot create the work directory \(directory)", cause: error)
        }
        let descriptor = open("\(directory)/.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw NodeError(code: .workDirectory, message: "cannot create \(directory)/.lock: \(String(cString: strerror(errno)))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(descriptor)
            throw NodeError(
                code: .workDirectory,
                message: "the work directory \(directory) is in use by another node; give each node its own --node-id or --work-dir")
        }
        logger.debug("work directory ready", metadata: ["path": "\(directory)"])
        return descriptor
    }
}
