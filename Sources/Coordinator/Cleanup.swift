internal import FarmMedia
public import Foundation
internal import Logging

/// What one cleanup pass removed.
public struct CleanupReport: Sendable, Equatable {
    /// Jobs finished longer ago than the retention, now forgotten (memory and job store).
    public var jobsForgotten: [String] = []
    /// Files and directories removed.
    public var removed: [String] = []
    /// Bytes those held.
    public var bytesFreed: Int64 = 0
}

/// The file side of a cleanup pass: the coordinator decides what may go (on its actor, from its
/// jobs), this removes it on a thread of its own. It only ever removes paths inside the data
/// directory or the managed output directory, and never a path the coordinator named as in use.
struct Cleaner: Sendable {
    let dataDirectory: String
    let managedOutputDirectory: String?

    /// The entries of the work-file directory (`<data dir>/jobs`), listed before the coordinator
    /// decides: a job created after the listing cannot be in it, so it cannot be removed by mistake.
    func listWorkDirectories() -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: dataDirectory + "/jobs")) ?? []
    }

    /// Temporary outputs (`.NAME.farm-tmp-ID.EXT`) in the managed output directory, by job id.
    func listTemporaryOutputs() -> [(path: String, job: String)] {
        guard let directory = managedOutputDirectory,
            let names = try? FileManager.default.contentsOfDirectory(atPath: directory)
        else { return [] }
        return names.compactMap { name in
            guard name.hasPrefix("."), let marker = name.range(of: ".farm-tmp-") else { return nil }
            let rest = name[marker.upperBound...]
            let job = rest.lastIndex(of: ".").map { String(rest[..<$0]) } ?? String(rest)
            return ("\(directory)/\(name)", job)
        }
    }

    /// Whether `path` is an output the coordinator owns (inside the managed output directory).
    func isManagedOutput(_ path: String) -> Bool {
        guard let directory = managedOutputDirectory else { return false }
        let resolved = URL(fileURLWithPath: path).standardizedFileURL.path
        let root = URL(fileURLWithPath: directory).standardizedFileURL.path
        return resolved.hasPrefix(root + "/")
    }

    /// Removes each path (files or directories) that lies where the cleaner may remove, never one in
    /// `keep`, and reports what went.
    func remove(_ paths: [String], keep: Set<String>, into report: inout CleanupReport) {
        let jobsRoot = URL(fileURLWithPath: dataDirectory + "/jobs").standardizedFileURL.path
        for path in paths where !keep.contains(path) {
            let resolved = URL(fileURLWithPath: path).standardizedFileURL.path
            guard resolved.hasPrefix(jobsRoot + "/") || isManagedOutput(resolved) else { continue }
            guard FileManager.default.fileExists(atPath: resolved) else { continue }
            let bytes = Self.size(of: resolved)
            do {
                try FileManager.default.removeItem(atPath: resolved)
                report.removed.append(resolved)
                report.bytesFreed += bytes
            } catch {
                continue
            }
        }
    }

    /// The bytes of a file, or of everything under a directory.
    static func size(of path: String) -> Int64 {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return 0 }
        guard isDirectory.boolValue else {
            return (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int64) ?? 0
        }
        var total: Int64 = 0
        let enumerator = FileManager.default.enumerator(atPath: path)
        while let name = enumerator?.nextObject() as? String {
            total += (try? FileManager.default.attributesOfItem(atPath: "\(path)/\(name)")[.size] as? Int64) ?? 0
        }
        return total
    }
}

extension Coordinator {
    /// Runs a cleanup pass every `cleanup.intervalSeconds` (the first right away) until cancelled.
    func cleanupLoop() async {
        let interval = configuration.cleanup.intervalSeconds
        guard interval > 0 else { return }
        while !Task.isCancelled {
            let report = await cleanUp()
            if !report.removed.isEmpty || !report.jobsForgotten.isEmpty {
                logger.info(
                    "cleanup",
                    metadata: [
                        "jobs_forgotten": "\(report.jobsForgotten.count)", "removed": "\(report.removed.count)",
                        "bytes_freed": "\(report.bytesFreed)",
                    ])
            }
            try? await Task.sleep(for: .seconds(interval))
        }
    }

    /// One cleanup pass (see ``CleanupPolicy``): forgets jobs finished before the retention, with
    /// their outputs when the coordinator owns them, and removes work files and temporary outputs
    /// that belong to no unfinished job. Files of unfinished jobs are never touched.
    public func cleanUp(now: Date = Date()) async -> CleanupReport {
        let cleaner = Cleaner(
            dataDirectory: configuration.dataDirectory, managedOutputDirectory: configuration.cleanup.managedOutputDirectory)
        // List first, decide second: whatever is created after the listing is not in it.
        let (workNames, temporaries) = (try? await Offload.run("cleanup listing") { _ in
            (cleaner.listWorkDirectories(), cleaner.listTemporaryOutputs())
        }) ?? ([], [])
        let cutoff = now.addingTimeInterval(-configuration.cleanup.retentionSeconds)
        let plan = cleanupPlan(
            retiringBefore: ContinuousClock.now - .seconds(configuration.cleanup.retentionSeconds))
        var report = CleanupReport()
        report.jobsForgotten = plan.forgotten.map(\.id)
        var expired = plan.forgotten.map { (output: $0.output, work: $0.work) }
        if let store = storeForCleanup {
            // Jobs finished before a restart are only in the store.
            let stored = (try? await store.deleteJobs(finishedBefore: cutoff)) ?? []
            forgetArchived(stored.map(\.id))
            for job in stored where !report.jobsForgotten.contains(job.id) {
                report.jobsForgotten.append(job.id)
                expired.append((job.output, configuration.dataDirectory + "/jobs/\(job.id)"))
            }
            _ = try? await store.pruneEvents(before: cutoff)
        }
        var doomed: [String] = []
        for job in expired {
            doomed.append(job.work)
            if cleaner.isManagedOutput(job.output) { doomed.append(job.output) }
        }
        for name in workNames where !plan.keepWork.contains(name) {
            doomed.append(configuration.dataDirectory + "/jobs/\(name)")
        }
        for temporary in temporaries where !plan.unfinished.contains(temporary.job) {
            doomed.append(temporary.path)
        }
        let keep = plan.keepPaths
        let final = report
        let paths = doomed
        return (try? await Offload.run("cleanup") { _ in
            var report = final
            cleaner.remove(paths, keep: keep, into: &report)
            return report
        }) ?? report
    }
}
