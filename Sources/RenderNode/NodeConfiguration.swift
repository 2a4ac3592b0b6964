public import FarmHWEncode
public import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// What a render node needs to join a farm: where the coordinator is, who the node is, the shared join token,
/// and how much work it takes on.
public struct NodeConfiguration: Sendable {
    /// The host name or address of the coordinator's node port.
    public var coordinatorHost: String
    /// The coordinator's node port.
    public var coordinatorPort: Int
    /// The node's identity, unique in the farm. Defaults to the host name, a dash and a short random suffix.
    public var nodeID: String
    /// The join token shared with the coordinator. It never crosses the wire: both sides prove they hold it.
    public var joinToken: String
    /// How many segments the node encodes at once; at least 1.
    public var slots: Int
    /// Encoder threads per slot, used when a job's settings leave it open; 0 lets the encoder decide.
    public var threads: Int
    /// Where segment files are kept while a task runs. Created if missing; the node removes the files it writes
    /// there, not the directory.
    public var workDirectory: String
    /// Whether to reconnect with backoff (0.5 s doubling to 10 s) when the connection ends; if `false`,
    /// ``RenderNode/run()`` returns when it ends.
    public var reconnect: Bool
    /// The hardware probe report, sent in the hello as JSON (`"{}"` if none).
    public var capabilitiesJSON: String
    /// Which encoders the node tries for a segment (hardware first unless `--hardware off`).
    public var chooser: EncoderChooser?
    /// Dial plain TCP instead of TLS (`--insecure-plain-tcp`): only for a coordinator that was started that way.
    ///
    /// Over TLS the node needs no certificate set-up: it does not check the coordinator's certificate chain, it binds
    /// its join proof to the certificate's hash instead, so a proxy that presents another certificate fails.
    public var insecurePlainTCP: Bool
    /// The pin of the coordinator's key (``CoordinatorKeyPin``, `--coordinator-key-sha256`): a coordinator whose
    /// certificate carries another key is refused before the node proves anything to it. Nil trusts whoever holds
    /// the join token, and the node warns.
    public var coordinatorKeySHA256: String?
    /// Test-only fault switches (`FARM_TEST_*`, see ``TestFaults``); none by default.
    public var testFaults = TestFaults()
    /// Where the node logs.
    public var logger: Logger

    /// Creates a configuration.
    ///
    /// - Parameters:
    ///   - coordinatorHost: The coordinator's host; default loopback.
    ///   - coordinatorPort: The coordinator's node port; default 7700.
    ///   - nodeID: The node's identity; `nil` makes one from the host name and a random suffix.
    ///   - joinToken: The shared join token.
    ///   - slots: Segments encoded at once; default 1.
    ///   - threads: Encoder threads per slot; default 0 (the encoder decides).
    ///   - workDirectory: The directory for segment files; `nil` means `$TMPDIR/farm-node-<nodeID>`.
    ///   - reconnect: Whether to reconnect after the connection ends; default `true`.
    ///   - capabilitiesJSON: The probe report; default `"{}"`.
    ///   - insecurePlainTCP: Dial plain TCP instead of TLS; default `false`.
    ///   - logger: Where to log; default a logger labelled `farm.node`.
    public init(
        coordinatorHost: String = "127.0.0.1",
        coordinatorPort: Int = 7700,
        nodeID: String? = nil,
        joinToken: String,
        slots: Int = 1,
        threads: Int = 0,
        workDirectory: String? = nil,
        reconnect: Bool = true,
        capabilitiesJSON: String = "{}",
        chooser: EncoderChooser? = nil,
        insecurePlainTCP: Bool = false,
        logger: Logger = Logger(label: "farm.node")
    ) {
        self.insecurePlainTCP = insecurePlainTCP
        let nodeID = nodeID ?? Self.defaultNodeID()
        self.coordinatorHost = coordinatorHost
        self.coordinatorPort = coordinatorPort
        self.nodeID = nodeID
        self.joinToken = joinToken
        self.slots = slots
        self.threads = threads
        self.workDirectory = workDirectory ?? "\(Self.temporaryDirectory())/farm-node-\(nodeID)"
        self.reconnect = reconnect
        self.capabilitiesJSON = capabilitiesJSON
        self.chooser = chooser
        self.logger = logger
    }

    /// A node ID made of the host name, a dash and six random hexadecimal digits, for example `render-7-3fa9c1`.
    public static func defaultNodeID() -> String {
        var name = [CChar](repeating: 0, count: 256)
        let host: String
        if gethostname(&name, name.count - 1) == 0, name[0] != 0 {
            host = String(decoding: name.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        } else {
            host = "node"
        }
        let suffix = String(UInt32.random(in: 0...0xFF_FFFF), radix: 16)
        return "\(host)-\(String(repeating: "0", count: 6 - suffix.count))\(suffix)"
    }

    static func temporaryDirectory() -> String {
        if let value = getenv("TMPDIR"), value[0] != 0 {
            let path = String(cString: value)
            return path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        }
        return "/tmp"
    }

    /// The slots as the protocol carries them, at least 1.
    var effectiveSlots: Int { min(max(1, self.slots), Int(UInt16.max)) }
}
