/// An error in the farm wire protocol: a frame that breaks the framing rules, a payload that does not parse,
/// or a peer that fails the handshake.
///
/// Every such error ends the connection it happened on, and only that connection.
/// Callers match on ``code``; ``message`` says what was wrong, with the numbers involved.
public struct ProtocolError: Error, Sendable, CustomStringConvertible {
    /// What kind of protocol violation happened.
    ///
    /// A struct over a private enum, so that codes can be added without breaking callers that switch over them.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Hashable, Sendable {
            case frameTooLarge
            case unknownFrameType
            case malformedPayload
            case versionMismatch
            case badChecksum
            case authenticationFailed
            case unexpectedMessage
            case rateLimited
        }

        private var wrapped: Wrapped

        private init(_ wrapped: Wrapped) {
            self.wrapped = wrapped
        }

        /// A frame's length header is larger than the maximum frame size (checked before the body is read),
        /// or a message is too large to be sent in one frame.
        public static let frameTooLarge = Code(.frameTooLarge)

        /// A frame carries a type code that this version of the protocol does not know.
        public static let unknownFrameType = Code(.unknownFrameType)

        /// A frame is malformed: a length of zero, a payload that is truncated, has trailing bytes or holds an
        /// invalid value, or a connection that ended in the middle of a frame.
        public static let malformedPayload = Code(.malformedPayload)

        /// The peer speaks a different protocol version.
        public static let versionMismatch = Code(.versionMismatch)

        /// Transferred bytes do not match their announced length or their checksum (XXH3-128).
        public static let badChecksum = Code(.badChecksum)

        /// A join proof did not verify: the peers do not share the same join token.
        public static let authenticationFailed = Code(.authenticationFailed)

        /// A well-formed message arrived at a point of the conversation where it is not allowed.
        public static let unexpectedMessage = Code(.unexpectedMessage)

        /// The peer sent messages faster than the receiver allows.
        public static let rateLimited = Code(.rateLimited)

        public var description: String {
            switch self.wrapped {
            case .frameTooLarge: "frame too large"
            case .unknownFrameType: "unknown frame type"
            case .malformedPayload: "malformed payload"
            case .versionMismatch: "version mismatch"
            case .badChecksum: "bad checksum"
            case .authenticationFailed: "authentication failed"
            case .unexpectedMessage: "unexpected message"
            case .rateLimited: "rate limited"
            }
        }
    }

    /// What kind of violation this is.
    public var code: Code

    /// A human-readable account of what was wrong, with the numbers involved.
    public var message: String

    /// Creates an error with a code and a message.
    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String {
        "\(self.code): \(self.message)"
    }
}
