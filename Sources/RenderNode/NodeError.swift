/// An error that ends a render node's ``RenderNode/run()``, or one of its connections.
///
/// Callers match on ``code``; ``message`` says what went wrong, with the coordinator's address or reason.
public struct NodeError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is.
    ///
    /// A struct over a private enum, so that codes can be added without breaking callers that switch over them.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Hashable, Sendable {
            case rejected
            case connectFailed
            case handshakeFailed
            case authenticationFailed
            case protocolViolation
            case workDirectory
            case alreadyRunning
        }

        private var wrapped: Wrapped

        private init(_ wrapped: Wrapped) {
            self.wrapped = wrapped
        }

        /// The coordinator refused the node (a `reject` during the handshake), for example for a wrong join token.
        /// The node does not reconnect after this.
        public static let rejected = Code(.rejected)

        /// The TCP connection to the coordinator could not be made.
        public static let connectFailed = Code(.connectFailed)

        /// The handshake did not complete: no challenge in time, a different protocol version, or the connection
        /// ended during it.
        public static let handshakeFailed = Code(.handshakeFailed)

        /// The coordinator failed to prove that it holds the join token. The node does not reconnect after this.
        public static let authenticationFailed = Code(.authenticationFailed)

        /// The coordinator sent a message that the protocol does not allow at that point.
        public static let protocolViolation = Code(.protocolViolation)

        /// The work directory cannot be created.
        public static let workDirectory = Code(.workDirectory)

        /// ``RenderNode/run()`` was called while it was already running.
        public static let alreadyRunning = Code(.alreadyRunning)

        public var description: String {
            switch self.wrapped {
            case .rejected: "rejected"
            case .connectFailed: "connect failed"
            case .handshakeFailed: "handshake failed"
            case .authenticationFailed: "authentication failed"
            case .protocolViolation: "protocol violation"
            case .workDirectory: "work directory"
            case .alreadyRunning: "already running"
            }
        }
    }

    /// What kind of failure this is.
    public var code: Code
    /// What went wrong, with the details that matter.
    public var message: String
    /// The underlying error, if there is one.
    public var cause: (any Error)?

    /// Creates an error.
    public init(code: Code, message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        if let cause {
            return "\(self.code): \(self.message) (\(cause))"
        }
        return "\(self.code): \(self.message)"
    }
}
