public import Logging

/// How the coordinator's HTTP API runs: where it listens, which local files it may read, where
/// outputs and uploads go, and the limits it enforces.
public struct HTTPConfiguration: Sendable {
    /// The address to listen on (`0.0.0.0` for every interface).
    public var host: String
    /// The port to listen on; 0 lets the system choose (the chosen one is logged as "http listening").
    public var port: Int
    /// Directories a job's source path may lie under (after symlinks and `..` are resolved).
    /// Empty: no path is accepted, only uploads.
    public var sourceRoots: [String]
    /// Where the outputs of jobs submitted over HTTP are written (`<data dir>/outputs`).
    public var outputDirectory: String
    /// Where uploaded sources are kept while their job runs (`<data dir>/uploads`).
    public var uploadDirectory: String
    /// The largest upload accepted, in bytes.
    public var maxUploadBytes: Int64
    /// When set, every request but `/health` and `/ready` (and `/metrics` with ``metricsOpen``) must carry
    /// `Authorization: Bearer <token>`. `farm coordinator` always sets one; nil leaves the API open (tests).
    public var apiToken: String?
    /// Whether `GET /metrics` answers without the token (for a scraper on a private network).
    public var metricsOpen: Bool = false
    /// How long utilisation must stay under 30 % before `farm_scale_down_hint` is 1.
    public var scaleDownWindow: Duration
    /// Free space in the data directory below which `/validate-system` fails.
    public var minimumFreeBytes: UInt64
    /// Uploads received at once (whole, multipart or resumable); past it an upload answers 429.
    public var maxConcurrentUploads = 8
    /// A resumable upload nobody adds to for this long is removed.
    public var staleUploadSeconds: Double = 6 * 3600
    /// When both are set, the API serves HTTPS with this certificate chain (PEM, leaf first) and key (PEM).
    public var tlsCertificateFile: String?
    public var tlsKeyFile: String?
    /// The same as PEM text (the node port's identity from `FARM_TLS_CERT`/`FARM_TLS_KEY`); the files win.
    public var tlsPEM: (certificate: String, key: String)?
    /// A connection that sends nothing for this long, between requests or in the middle of reading one, is closed
    /// (a response being written, a download among them, is not cut).
    public var idleTimeoutSeconds: Double = 60
    /// Where the API logs ("http listening", submissions, cancellations, server-side failures).
    public var logger: Logger

    /// A configuration whose outputs and uploads live under `dataDirectory`.
    public init(
        host: String = "0.0.0.0", port: Int = 8080, sourceRoots: [String] = [], dataDirectory: String,
        maxUploadBytes: Int64 = 64 << 30, apiToken: String? = nil, scaleDownWindow: Duration = .seconds(300),
        minimumFreeBytes: UInt64 = 1 << 30, logger: Logger = Logger(label: "farm.http")
    ) {
        self.init(
            host: host, port: port, sourceRoots: sourceRoots, outputDirectory: dataDirectory + "/outputs",
            uploadDirectory: dataDirectory + "/uploads", maxUploadBytes: maxUploadBytes, apiToken: apiToken,
            scaleDownWindow: scaleDownWindow, minimumFreeBytes: minimumFreeBytes, logger: logger)
    }

    /// A configuration with every directory given explicitly.
    public init(
        host: String, port: Int, sourceRoots: [String], outputDirectory: String, uploadDirectory: String,
        maxUploadBytes: Int64, apiToken: String? = nil, scaleDownWindow: Duration = .seconds(300),
        minimumFreeBytes: UInt64 = 1 << 30, logger: Logger = Logger(label: "farm.http")
    ) {
        self.host = host
        self.port = port
        self.sourceRoots = sourceRoots
        self.outputDirectory = outputDirectory
        self.uploadDirectory = uploadDirectory
        self.maxUploadBytes = maxUploadBytes
        self.apiToken = apiToken
        self.scaleDownWindow = scaleDownWindow
        self.minimumFreeBytes = minimumFreeBytes
        self.logger = logger
    }
}
