import ArgumentParser
import FarmCoordinator

/// `farm coordinator`'s limits on sources: URL downloads, uploads, picture size and duration.
struct SourceOptions: ParsableArguments {
    @Flag(
        name: .customLong("allow-private-urls"),
        help: "Let URL sources (and their redirects) reach loopback, private and link-local addresses.")
    var allowPrivateURLs = false

    @Option(
        name: .customLong("allow-private-host"),
        help: "A host, as URLs name it, that may resolve to a non-public address (repeatable).")
    var allowPrivateHosts: [String] = []

    @Option(name: .customLong("max-download-gib"), help: "The largest source downloaded from a URL, in GiB.")
    var maxDownloadGiB = 20.0

    @Option(name: .customLong("download-time-limit"), help: "Seconds a URL download may take, retries included.")
    var downloadTimeLimit = 6.0 * 3600

    @Option(name: .customLong("download-retries"), help: "Attempts in a row without progress before a download fails.")
    var downloadRetries = 5

    @Option(name: .customLong("max-source-size"), help: "The largest source picture, WIDTHxHEIGHT.")
    var maxSourceSize = "8192x8192"

    @Option(name: .customLong("max-source-hours"), help: "The longest source, in hours.")
    var maxSourceHours = 24.0

    @Option(name: .customLong("max-uploads"), help: "Uploads received at once; past it an upload answers 429.")
    var maxUploads = 8

    func validate() throws {
        guard maxDownloadGiB > 0 else { throw ValidationError("--max-download-gib must be positive") }
        guard downloadTimeLimit > 0 else { throw ValidationError("--download-time-limit must be positive") }
        guard (0...100).contains(downloadRetries) else { throw ValidationError("--download-retries must be between 0 and 100") }
        guard maxSourceHours > 0 else { throw ValidationError("--max-source-hours must be positive") }
        guard maxUploads >= 1 else { throw ValidationError("--max-uploads must be at least 1") }
        _ = try pictureLimit()
    }

    func pictureLimit() throws -> (Int, Int) {
        let parts = maxSourceSize.lowercased().split(separator: "x")
        guard parts.count == 2, let w = Int(parts[0]), let h = Int(parts[1]), w > 0, h > 0 else {
            throw ValidationError("--max-source-size \(maxSourceSize): expected WIDTHxHEIGHT such as 8192x8192")
        }
        return (w, h)
    }

    func applied(to configuration: CoordinatorConfiguration) -> CoordinatorConfiguration {
        var coordinator = configuration
        coordinator.downloads.allowPrivateAddresses = allowPrivateURLs
        coordinator.downloads.privateHosts = Set(allowPrivateHosts.map { $0.lowercased() })
        coordinator.downloads.maxBytes = Int64(maxDownloadGiB * Double(1 << 30))
        coordinator.downloads.timeLimitSeconds = downloadTimeLimit
        coordinator.downloads.maxRetries = downloadRetries
        // validate() has checked the picture limit.
        (coordinator.sourceLimits.maxWidth, coordinator.sourceLimits.maxHeight) = (try? pictureLimit()) ?? (8192, 8192)
        coordinator.sourceLimits.maxDurationSeconds = maxSourceHours * 3600
        return coordinator
    }

    func applied(to configuration: HTTPConfiguration) -> HTTPConfiguration {
        var http = configuration
        http.maxConcurrentUploads = maxUploads
        return http
    }
}
