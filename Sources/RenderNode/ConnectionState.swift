import FarmMedia
import FarmProtocol

/// The state of one connection to the coordinator after the handshake: whether it takes work, and the tasks it
/// holds. Held in a `Mutex` by ``Connection``; every transition is a `mutating` method that says what the caller
/// must do next, so the caller never decides on a stale copy.
struct ConnectionState {
    /// Whether the connection takes new tasks.
    enum Phase: Equatable {
        /// Taking tasks.
        case working
        /// Asked to drain (by the coordinator or by a local signal): finishing the tasks in hand, taking no new ones.
        case draining
        /// Going away: the `drain` was sent (`drained`), or the connection is being closed for `reason`.
        /// Nothing more is started or sent.
        case closing(reason: String, drained: Bool)
    }

    /// Where a held task is.
    enum Stage: Equatable {
        /// Its segment bytes are arriving.
        case receiving
        /// Its segment is being encoded.
        case encoding
        /// Its result is being sent.
        case sending
    }

    /// A task the node holds, from its `assign` until it is reported, fails or is cancelled.
    struct HeldTask {
        var stage: Stage
        var framesDone: UInt64
        /// Stops the task's encode; set on `cancel` and when the connection closes.
        let flag: CancellationFlag
    }

    /// The answer to an `assign`.
    enum Admission: Equatable {
        case accepted
        /// The task is not taken; the coordinator gets a retryable failure.
        case refused(String)
        /// The `assign` breaks the protocol; the connection closes.
        case violation(String)
    }

    /// What the caller must do after a transition.
    enum Next: Equatable {
        case nothing
        /// The node was draining and its last task is done: send `drain` and close the connection.
        case sendDrainAndClose
    }

    /// The answer to a drain request.
    enum DrainStart: Equatable {
        /// Already draining or closing.
        case alreadyDraining
        /// Draining; this many tasks are still held.
        case waiting(tasks: Int)
        /// No task is held: send `drain` and close now.
        case sendDrainAndClose
    }

    let slots: Int
    private(set) var phase: Phase = .working
    private var tasks: [UInt64: HeldTask] = [:]

    init(slots: Int) {
        self.slots = slots
    }

    var isClosing: Bool {
        if case .closing = self.phase { return true }
        return false
    }

    /// The number of tasks held.
    var heldCount: Int { self.tasks.count }

    /// An `assign` arrived: take the task if the node works and has a free slot.
    mutating func admit(_ taskID: UInt64) -> Admission {
        switch self.phase {
        case .closing: return .refused("the node is closing the connection")
        case .draining: return .refused("the node is draining and takes no new tasks")
        case .working: break
        }
        guard self.tasks[taskID] == nil else {
            return .violation("a second assign for task \(taskID), which the node already holds")
        }
        // A slot is for receiving and encoding. A task that is sending its result has finished with
        // it: the coordinator counts the slot free as soon as the result's last byte arrives, which
        // can be before this side has released the task.
        guard self.tasks.values.filter({ $0.stage != .sending }).count < self.slots else {
            return .refused("no free slot (all \(self.slots) busy)")
        }
        self.tasks[taskID] = HeldTask(stage: .receiving, framesDone: 0, flag: CancellationFlag())
        return .accepted
    }

    /// All of a task's bytes arrived and checked out: it moves to encoding.
    ///
    /// - Returns: The flag that stops its encode, or `nil` if the task is no longer held or the connection closes.
    mutating func beginEncoding(_ taskID: UInt64) -> CancellationFlag? {
        guard !self.isClosing, var task = self.tasks[taskID], task.stage == .receiving else { return nil }
        task.stage = .encoding
        self.tasks[taskID] = task
        return task.flag
    }

    /// The encoder reports frames done.
    mutating func progress(_ taskID: UInt64, frames: Int) {
        self.tasks[taskID]?.framesDone = UInt64(max(0, frames))
    }

    /// A task's encode succeeded: it may send its result unless it was cancelled or the connection closes.
    mutating func beginSending(_ taskID: UInt64) -> Bool {
        guard !self.isClosing, var task = self.tasks[taskID], task.stage == .encoding, !task.flag.isCancelled else {
            return false
        }
        task.stage = .sending
        self.tasks[taskID] = task
        return true
    }

    /// Whether the task may still send (it is held and the connection is not closing).
    func maySend(_ taskID: UInt64) -> Bool {
        guard !self.isClosing, let task = self.tasks[taskID] else { return false }
        return !task.flag.isCancelled
    }

    /// A task is over (reported, failed, refused after admission, or stopped): its slot is free.
    mutating func release(_ taskID: UInt64) -> Next {
        guard self.tasks.removeValue(forKey: taskID) != nil else { return .nothing }
        return self.closeIfDrained()
    }

    /// The coordinator cancelled a task: stop it and free its slot at once.
    ///
    /// - Returns: The stage the task was in (`nil` if the node does not hold it) and what to do next.
    mutating func cancel(_ taskID: UInt64) -> (stage: Stage?, next: Next) {
        guard let task = self.tasks.removeValue(forKey: taskID) else { return (nil, .nothing) }
        task.flag.cancel()
        return (task.stage, self.closeIfDrained())
    }

    /// A drain was asked for.
    mutating func drain() -> DrainStart {
        guard self.phase == .working else { return .alreadyDraining }
        self.phase = .draining
        return self.closeIfDrained() == .sendDrainAndClose ? .sendDrainAndClose : .waiting(tasks: self.tasks.count)
    }

    /// The connection closes for `reason` (not a drain).
    ///
    /// - Returns: The flags of the tasks still held, to stop them, or `nil` if the connection was already closing.
    mutating func close(reason: String) -> [CancellationFlag]? {
        guard !self.isClosing else { return nil }
        self.phase = .closing(reason: reason, drained: false)
        let flags = self.tasks.values.map(\.flag)
        for flag in flags { flag.cancel() }
        return flags
    }

    /// The progress of every held task for a heartbeat, or `nil` once the connection closes.
    func heartbeat() -> [TaskProgress]? {
        guard !self.isClosing else { return nil }
        return self.tasks.map { TaskProgress(taskID: $0.key, framesDone: $0.value.framesDone) }
            .sorted { $0.taskID < $1.taskID }
    }

    private mutating func closeIfDrained() -> Next {
        guard self.phase == .draining, self.tasks.isEmpty else { return .nothing }
        self.phase = .closing(reason: "drained", drained: true)
        return .sendDrainAndClose
    }
}
