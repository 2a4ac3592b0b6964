import ArgumentParser
import FarmCoordinator
import FarmHWEncode
import FarmMedia
import FarmNode
import FarmProtocol
import Foundation
import Logging

/// `farm coordinator`: the control plane as a long-running process, with its HTTP API.
struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator", abstract: "Run a coordinator that render nodes dial into, with its HTTP API.")

    @Option(name: .customLong("http"), help: "Address for the HTTP API, HOST:PORT.")
    var http = "0.0.0.0:8080"

    @Option(name: .customLong("node-listen"), help: "Address for render nodes, HOST:PORT.")
    var nodeListen = "0.0.0.0:7700"

    @Option(name: .customLong("data-dir"), help: "Where job work files, uploads and outputs live.")
    var dataDir = "./farm-data"

    @Option(
        name: .customLong("source-root"),
        help: "A directory whose files jobs may name as their source (repeatable; none: uploads only).")
    var sourceRoots: [String] = []

    @Option(name: .customLong("max-upload-gib"), help: "The largest upload accepted, in GiB.")
    var maxUploadGiB = 64.0

    @Option(help: "Size the coordinator for a lease tier: budget, standard or highperf (explicit flags win).")
    var tier: Tier?

    @Option(name: .customLong("max-jobs"), help: "Jobs that run at once (default: the tier's, else 4).")
    var maxJobs: Int?

    @Option(name: .customLong("queue-limit"), help: "Jobs that may wait; past it POST /jobs answers 429 (default: the tier's, else 32).")
    var queueLimit: Int?

    @Option(name: .customLong("min-free-gib"), help: "Low-disk watermark: no job starts below this free space (default: the tier's, else 2).")
    var minFreeGiB: Double?

    @Option(
        name: .customLong("max-node-slots"),
        help: "The most slots one node may claim in its hello; a claim of more gets this many (default: the tier's node slots, else 64).")
    var maxNodeSlots: Int?

    @Option(
        name: .customLong("max-node-mib-per-second"),
        help: "Each node connection's byte budget in MiB/s (two seconds' worth in a burst); past it the node is disconnected.")
    var maxNodeMiBPerSecond = 1024

    @Option(name: .customLong("token-file"), help: "File holding the join token (else FARM_JOIN_TOKEN).")
    var tokenFile: String?

    @Option(
        name: .customLong("api-token-file"),
        help: "File holding the HTTP API's bearer token (else FARM_API_TOKEN, else one made in DATA-DIR/api-token).")
    var apiTokenFile: String?

    @Flag(name: .customLong("metrics-open"), help: "Serve GET /metrics without the API token.")
    var metricsOpen = false

    @Option(name: .customLong("tls-cert"), help: "The node port's TLS certificate chain, PEM (default: a self-signed one kept in DATA-DIR/tls).")
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "The private key of --tls-cert, PEM.")
    var tlsKey: String?

    @Option(name: .customLong("http-tls-cert"), help: "Serve the HTTP API over HTTPS with this certificate chain, PEM (leaf first).")
    var httpTLSCert: String?

    @Option(name: .customLong("http-tls-key"), help: "The private key of --http-tls-cert, PEM.")
    var httpTLSKey: String?

    @Flag(
        name: .customLong("http-tls-node-certificate"),
        help: "Serve the HTTP API over HTTPS with the node port's certificate (--tls-cert, or the one in DATA-DIR/tls).")
    var httpTLSNodeCertificate = false

    @Option(
        name: .customLong("http-idle-timeout"),
        help: "Seconds an HTTP connection may send nothing (between requests, or while its request is read) before it is closed.")
    var httpIdleTimeout = 60.0

    @Flag(
        name: .customLong("insecure-plain-tcp"),
        help: "Serve render nodes over plain TCP instead of TLS (unencrypted; nodes must pass it too).")
    var insecurePlainTCP = false

    @OptionGroup var sourceOptions: SourceOptions

    @Option(name: .customLong("cleanup-interval-hours"), help: "Hours between cleanup passes (0: never).")
    var cleanupIntervalHours = 6.0

    @Option(
        name: .customLong("retention-hours"),
        help: "Hours a finished job, and its output under the data dir, are kept before cleanup removes them.")
    var retentionHours = 168.0

    @Option(
        name: .customLong("quarantine-seconds"),
        help: "Seconds a node that failed 3 tasks in a row within 10 minutes gets no new work.")
    var quarantineSeconds = 300.0

    @Option(
        name: .customLong("node-label"),
        help: "Give a node id a node-pool label, ID=LABEL (repeatable); jobs that require the label go to it.")
    var nodeLabels: [String] = []

    @Flag(
        name: .customLong("accept-node-labels"),
        help: "Believe the labels nodes claim (farm node --label); without it only --node-label counts, since any holder of the join token can claim a label.")
    var acceptNodeLabels = false

    @Option(
        name: .customLong("work-threads"),
        help: "Threads of the coordinator's own CPU work at once, verification of results first (default: the tier's coordinator CPU, else every core).")
    var workThreads: Int?

    @Option(
        name: .customLong("ban-after-refusals"),
        help: "Results refused by the verifier after which a node is banned (the first quarantines it at once).")
    var banAfterRefusals = 2

    @Option(
        name: .customLong("lease-timeout"),
        help: "Seconds without a heartbeat after which a node is closed and its segments go to others (stall detector).")
    var leaseTimeout = 30

    @OptionGroup var common: CommonOptions

    func validate() throws {
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
        guard (httpTLSCert == nil) == (httpTLSKey == nil) else {
            throw ValidationError("--http-tls-cert and --http-tls-key go together")
        }
        if httpTLSNodeCertificate, httpTLSCert != nil {
            throw ValidationError("--http-tls-node-certificate and --http-tls-cert exclude each other")
        }
        if httpTLSNodeCertificate, insecurePlainTCP {
            throw ValidationError("--http-tls-node-certificate needs the node port's TLS (not --insecure-plain-tcp)")
        }
        guard httpIdleTimeout >= 1, httpIdleTimeout <= 86_400 else {
            throw ValidationError("--http-idle-timeout \(httpIdleTimeout): must be 1 to 86400 seconds")
        }
        if insecurePlainTCP, tlsCert != nil {
            throw ValidationError("--insecure-plain-tcp and --tls-cert exclude each other")
        }
        guard maxUploadGiB > 0 else { throw ValidationError("--max-upload-gib must be positive") }
        if let maxNodeSlots, !(1...4096).contains(maxNodeSlots) {
            throw ValidationError("--max-node-slots \(maxNodeSlots): must be 1 to 4096")
        }
        guard (1...(1 << 20)).contains(maxNodeMiBPerSecond) else {
            throw ValidationError("--max-node-mib-per-second \(maxNodeMiBPerSecond): must be 1 to 1048576")
        }
        guard cleanupIntervalHours >= 0 else { throw ValidationError("--cleanup-interval-hours must not be negative") }
        guard retentionHours >= 0 else { throw ValidationError("--retention-hours must not be negative") }
        guard quarantineSeconds >= 0 else { throw ValidationError("--quarantine-seconds must not be negative") }
        if let workThreads, !(1...1024).contains(workThreads) {
            throw ValidationError("--work-threads \(workThreads): must be 1 to 1024")
        }
        for entry in nodeLabels {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, NodeLabels.isValid(parts[1]) else {
                throw ValidationError("--node-label \(entry): expected ID=LABEL, LABEL 1 to 32 of a-z, 0-9, '.', '_', '-'")
            }
        }
        guard (1...1000).contains(banAfterRefusals) else {
            throw ValidationError("--ban-after-refusals \(banAfterRefusals): must be 1 to 1000")
        }
        // Nodes heartbeat every 2 s: a shorter timeout would close healthy nodes.
        guard leaseTimeout >= 3 else { throw ValidationError("--lease-timeout must be at least 3 seconds") }
        for root in sourceRoots {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ValidationError("--source-root \(root): not a directory")
            }
        }
    }

    func run() async throws {
        common.bootstrap(default: .info)
        let (host, port) = try parseHostPort(nodeListen, what: "--node-listen")
        let (httpHost, httpPort) = try parseHostPort(http, what: "--http")
        guard let token = try readSecret(environment: FarmEnvironment.current.joinToken, file: tokenFile) else {
            fail("no join token: set FARM_JOIN_TOKEN or pass --token-file")
        }
        if let problem = SecretStrength.problem(token, what: "join token") { fail(problem) }
        let dataDirectory = URL(fileURLWithPath: dataDir).standardizedFileURL.path
        let environment = FarmEnvironment.current
        if (environment.tlsCertificate == nil) != (environment.tlsKey == nil) {
            fail("FARM_TLS_CERT and FARM_TLS_KEY go together")
        }
        let nodeSecurity: NodeChannelSecurity
        if insecurePlainTCP {
            nodeSecurity = .insecurePlainTCP
        } else if let tlsCert, let tlsKey {
            nodeSecurity = .tlsCertificateFiles(certificate: tlsCert, key: tlsKey)
        } else if let certificate = environment.tlsCertificate, let key = environment.tlsKey {
            guard let certificatePEM = FarmEnvironment.pem(certificate), let keyPEM = FarmEnvironment.pem(key) else {
                fail("FARM_TLS_CERT and FARM_TLS_KEY must hold PEM, or base64 of PEM as `farm keys` prints it")
            }
            nodeSecurity = .tlsCertificatePEM(certificate: certificatePEM, key: keyPEM)
        } else {
            nodeSecurity = .tlsCertificateInDataDirectory
        }
        var configuration = CoordinatorConfiguration(
            nodeListenHost: host, nodeListenPort: port, dataDirectory: dataDirectory, joinToken: token,
            coordinatorID: ProcessInfo.processInfo.hostName,
            maxConcurrentJobs: maxJobs ?? tier?.maxConcurrentJobs ?? 4, queueLimit: queueLimit ?? tier?.queueLimit ?? 32,
            minimumFreeBytes: Int64((minFreeGiB ?? Double(tier?.lowDiskGiB ?? 2)) * Double(1 << 30)),
            nodeSecurity: nodeSecurity, logger: Logger(label: "farm.coordinator"))
        configuration.cleanup.intervalSeconds = cleanupIntervalHours * 3600
        configuration.cleanup.retentionSeconds = retentionHours * 3600
        configuration.cleanup.managedOutputDirectory = dataDirectory + "/outputs"
        configuration.quarantine.seconds = quarantineSeconds
        configuration.banAfterRefusals = banAfterRefusals
        for entry in nodeLabels {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            configuration.nodeLabels[parts[0], default: []].insert(parts[1])
        }
        configuration.acceptNodeLabels = acceptNodeLabels
        if let threads = workThreads ?? tier?.spec.coordinatorCPU { configuration.workThreads = threads }
        configuration.leaseTimeoutSeconds = leaseTimeout
        configuration.maxNodeSlots = maxNodeSlots ?? tier?.nodeSlots ?? 64
        configuration.maxNodeBytesPerSecond = maxNodeMiBPerSecond << 20
        let coordinator = Coordinator(configuration: sourceOptions.applied(to: configuration))
        let listener: NodeListener
        do {
            listener = try await coordinator.bind()
        } catch {
            fail("node port \(nodeListen): \(error)")
        }
        // The store's jobs are loaded before the API answers: no request or upload sweep sees a coordinator that
        // has not yet taken back the jobs of its previous run.
        do {
            try await coordinator.open()
        } catch {
            fail("job store in \(dataDirectory): \(error)")
        }
        let httpLogger = Logger(label: "farm.http")
        let apiToken: String
        if let given = try readSecret(environment: FarmEnvironment.current.apiToken, file: apiTokenFile) {
            apiToken = given
        } else {
            do {
                let made = try APIToken.loadOrCreate(dataDirectory: dataDirectory)
                apiToken = made.token
                let what = made.created ? "made an API token for clients' FARM_API_TOKEN" : "using the API token kept"
                httpLogger.notice(
                    "no FARM_API_TOKEN or --api-token-file: \(what)", metadata: ["file": "\(made.path)"])
            } catch {
                fail("\(error)")
            }
        }
        if let problem = SecretStrength.problem(apiToken, what: "API token") { fail(problem) }
        if metricsOpen { httpLogger.notice("GET /metrics answers without the API token (--metrics-open)") }
        var httpConfiguration = sourceOptions.applied(to: HTTPConfiguration(
            host: httpHost, port: httpPort,
            sourceRoots: sourceRoots.map { URL(fileURLWithPath: $0).standardizedFileURL.path },
            dataDirectory: dataDirectory, maxUploadBytes: Int64(maxUploadGiB * Double(1 << 30)), apiToken: apiToken,
            logger: httpLogger))
        httpConfiguration.metricsOpen = metricsOpen
        httpConfiguration.idleTimeoutSeconds = httpIdleTimeout
        if let httpTLSCert, let httpTLSKey {
            (httpConfiguration.tlsCertificateFile, httpConfiguration.tlsKeyFile) = (httpTLSCert, httpTLSKey)
        } else if httpTLSNodeCertificate {
            // The node port made or loaded its certificate when it bound, above.
            switch nodeSecurity {
            case .tlsCertificateFiles(let certificate, let key):
                (httpConfiguration.tlsCertificateFile, httpConfiguration.tlsKeyFile) = (certificate, key)
            case .tlsCertificatePEM(let certificate, let key):
                httpConfiguration.tlsPEM = (certificate, key)
            default:
                (httpConfiguration.tlsCertificateFile, httpConfiguration.tlsKeyFile) =
                    NodeChannelSecurity.certificateFiles(dataDirectory: dataDirectory)
            }
        } else if httpHost != "127.0.0.1", httpHost != "::1", httpHost != "localhost" {
            httpLogger.notice(
                """
                the HTTP API is plain HTTP: its bearer token and every upload cross the network unencrypted unless \
                a TLS proxy is in front (--http-tls-cert/--http-tls-key or --http-tls-node-certificate serve HTTPS)
                """)
        }
        // SIGTERM and SIGINT shut the HTTP server and the coordinator down together.
        do {
            try await HTTPAPI.serve(coordinator: coordinator, listener: listener, configuration: httpConfiguration)
        } catch is CancellationError {
        } catch {
            fail("\(error)")
        }
    }
}
