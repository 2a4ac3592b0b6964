internal import Foundation

#if canImport(Glibc)
    internal import Glibc
#elseif canImport(Darwin)
    internal import Darwin
#endif

/// The CPUs and memory this process may really use: a container sees the host's CPUs and memory in
/// sysconf and /proc/meminfo, but its affinity mask and cgroup limits are what count.
enum SystemLimits {
    static func read() -> (cpuCount: Int, memoryBytes: UInt64) {
        let cgroups = CgroupPaths(procSelfCgroup: readFile("/proc/self/cgroup") ?? "")
        return (cpuCount(cgroups), memoryBytes(cgroups))
    }

    /// Online CPUs, limited by the affinity mask and by the cgroup CPU quota (rounded up).
    static func cpuCount(_ cgroups: CgroupPaths) -> Int {
        var count = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        if let status = readFile("/proc/self/status"),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }),
            let allowed = cpuListCount(line.dropFirst("Cpus_allowed_list:".count)), allowed > 0
        {
            count = min(count, allowed)
        }
        if let quota = cgroups.cpuQuota() {
            count = min(count, max(1, Int(quota.rounded(.up))))
        }
        return count
    }

    /// MemTotal, or the lowest cgroup memory limit on the way to the root when lower.
    static func memoryBytes(_ cgroups: CgroupPaths) -> UInt64 {
        var total: UInt64 = 0
        if let meminfo = readFile("/proc/meminfo"),
            let line = meminfo.split(separator: "\n").first(where: { $0.hasPrefix("MemTotal:") })
        {
            let fields = line.split(separator: " ")
            if fields.count >= 2, let kib = UInt64(fields[1]) { total = kib * 1024 }
        }
        if total == 0 {
            total = UInt64(max(0, sysconf(Int32(_SC_PHYS_PAGES)))) * UInt64(max(0, sysconf(Int32(_SC_PAGESIZE))))
        }
        if let limit = cgroups.memoryLimit(), limit > 0, total == 0 || limit < total { return limit }
        return total
    }

    /// The number of CPUs in a list such as "0-3,8,10-11".
    static func cpuListCount<S: StringProtocol>(_ list: S) -> Int? {
        var count = 0
        for range in list.trimmingCharacters(in: .whitespaces).split(separator: ",") {
            let ends = range.split(separator: "-")
            guard let first = ends.first.flatMap({ Int($0) }) else { return nil }
            let last = ends.count > 1 ? Int(ends[1]) : first
            guard let last, last >= first else { return nil }
            count += last - first + 1
        }
        return count
    }

    static func readFile(_ path: String) -> String? {
        try? String(contentsOfFile: path, encoding: .utf8)
    }
}

/// Where this process's cgroups are, for cgroup v2 (unified) and v1 (one hierarchy per controller).
struct CgroupPaths {
    /// The unified hierarchy's path ("0::/path"), if any.
    var unified: String?
    /// Per v1 controller ("memory", "cpu"), the path in that hierarchy.
    var v1: [String: String] = [:]

    init(procSelfCgroup: String) {
        for line in procSelfCgroup.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            if fields[0] == "0" && fields[1].isEmpty {
                unified = String(fields[2])
            } else {
                for controller in fields[1].split(separator: ",") { v1[String(controller)] = String(fields[2]) }
            }
        }
    }

    /// The lowest memory limit from this cgroup up to the mount's root. Inside a container the path
    /// from /proc/self/cgroup may not exist under the mount (the container sees its own cgroup as the
    /// root), so directories that do not exist are skipped.
    func memoryLimit() -> UInt64? {
        var limits: [UInt64] = []
        if let unified {
            for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                limits += Self.values(root: root, path: unified, file: "memory.max") { UInt64($0) }
            }
        }
        if let path = v1["memory"] {
            // v1 writes "unlimited" as the largest page-aligned Int64.
            limits += Self.values(root: "/sys/fs/cgroup/memory", path: path, file: "memory.limit_in_bytes") {
                UInt64($0).flatMap { $0 >= 1 << 62 ? nil : $0 }
            }
        }
        return limits.min()
    }

    /// The lowest CPU quota, in CPUs, from this cgroup up to the mount's root.
    func cpuQuota() -> Double? {
        var quotas: [Double] = []
        if let unified {
            for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                // "max 100000" is no limit; "200000 100000" is two CPUs.
                quotas += Self.values(root: root, path: unified, file: "cpu.max") { text in
                    let fields = text.split(separator: " ")
                    guard fields.count == 2, let quota = Double(fields[0]), let period = Double(fields[1]), period > 0
                    else { return nil }
                    return quota / period
                }
            }
        }
        if let path = v1["cpu"] {
            for root in ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"] {
                // A quota of -1 is no limit.
                for directory in Self.directories(root: root, path: path) {
                    guard let quota = Self.number(directory, "cpu.cfs_quota_us"), quota > 0,
                        let period = Self.number(directory, "cpu.cfs_period_us"), period > 0
                    else { continue }
                    quotas.append(quota / period)
                }
            }
        }
        return quotas.min()
    }

    /// `file`'s parsed value in every directory from root/path up to root that has it.
    static func values<T>(root: String, path: String, file: String, parse: (String) -> T?) -> [T] {
        directories(root: root, path: path).compactMap { directory in
            SystemLimits.readFile(directory + "/" + file).flatMap {
                parse($0.trimmingCharacters(in: .whitespacesAndNewlines))
            }
        }
    }

    /// root/path, its parent, ... , root.
    static func directories(root: String, path: String) -> [String] {
        var components = path.split(separator: "/").map(String.init)
        var result = [([root] + components).joined(separator: "/")]
        while !components.isEmpty {
            components.removeLast()
            result.append(([root] + components).joined(separator: "/"))
        }
        return result
    }

    static func number(_ directory: String, _ file: String) -> Double? {
        SystemLimits.readFile(directory + "/" + file).flatMap {
            Double($0.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }
}
