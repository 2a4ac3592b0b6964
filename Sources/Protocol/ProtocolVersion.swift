/// The version of the wire protocol spoken by this build.
///
/// It is carried in ``Challenge/version`` and ``Hello/version``; a coordinator and a node with different versions
/// refuse each other during the handshake.
public let farmProtocolVersion: UInt16 = 5
