/// The sizes farm is deployed at, and what each size runs.
///
/// This enum is the one table of tiers: `farm coordinator --tier T` and `farm node --tier T` take their settings
/// from it, `farm tiers` prints it, `docs/tiers.md` explains it, and `deploy/akash-*.yaml` size their leases from
/// it (a test fails when an SDL file drifts from `farm tiers --json`).
///
/// The resources (``cpu``, ``memoryGiB``, ``storageGiB``, ``gpu``) are those of **one render node** (one replica of
/// the Akash `render-node` service). The coordinator's own lease is sized by the `coordinator…` numbers.
///
/// The settings follow from the resources by these rules of thumb (`docs/tiers.md` has the arithmetic):
/// - A software encoder at preset medium keeps about one core busy per encode at 720p/1080p; a segment is an
///   independent encode, so one slot with one thread per core scales linearly, where one encode with many threads
///   does not (lookahead and frame-thread dependencies leave cores idle).
/// - A slot needs up to about 2 GiB in the worst case farm plans for, a 4K x265 encode: ≈ 1.5 GiB for the encoder
///   (lookahead and reference frames) and ≈ 0.5 GiB for the decoder's reference frames of the source.
/// - A slot holds at most one segment on disk at a time: its packets (≤ 60 s of a 100 Mbit/s source ≈ 0.75 GB),
///   the encoded result and the node's decode check of it: 2 GiB per slot is a safe bound.
public enum Tier: String, CaseIterable, Sendable, Codable {
    /// 2 CPU / 6 GiB / 20 GiB per node: the cheapest lease that still encodes two segments at once.
    case budget
    /// 4 CPU / 12 GiB / 50 GiB per node: the default, sized for 3 to 5 jobs in flight.
    case standard
    /// 8 CPU / 24 GiB / 100 GiB per node and one NVIDIA GPU for NVENC.
    case highperf

    /// The numbers of this tier. This switch is the table.
    public var spec: TierSpec {
        switch self {
        case .budget:
            TierSpec(
                tier: self, cpu: 2, memoryGiB: 6, storageGiB: 20, gpu: 0,
                nodeSlots: 2, encoderThreadsPerSlot: 1, maxConcurrentJobs: 2, queueLimit: 16,
                lowDiskGiB: 4, lowDiskPercent: 10,
                coordinatorCPU: 1, coordinatorMemoryGiB: 2, coordinatorStorageGiB: 2, coordinatorDataGiB: 50)
        case .standard:
            TierSpec(
                tier: self, cpu: 4, memoryGiB: 12, storageGiB: 50, gpu: 0,
                nodeSlots: 4, encoderThreadsPerSlot: 1, maxConcurrentJobs: 4, queueLimit: 32,
                lowDiskGiB: 8, lowDiskPercent: 10,
                coordinatorCPU: 2, coordinatorMemoryGiB: 4, coordinatorStorageGiB: 2, coordinatorDataGiB: 100)
        case .highperf:
            TierSpec(
                tier: self, cpu: 8, memoryGiB: 24, storageGiB: 100, gpu: 1,
                nodeSlots: 4, encoderThreadsPerSlot: 2, maxConcurrentJobs: 6, queueLimit: 48,
                lowDiskGiB: 8, lowDiskPercent: 10,
                coordinatorCPU: 4, coordinatorMemoryGiB: 8, coordinatorStorageGiB: 2, coordinatorDataGiB: 150)
        }
    }

    /// CPU cores of one render node (Akash `cpu.units`).
    public var cpu: Int { spec.cpu }

    /// Memory of one render node in GiB (Akash `memory.size`).
    public var memoryGiB: Int { spec.memoryGiB }

    /// Ephemeral storage of one render node in GiB: the root file system its segment files live on.
    public var storageGiB: Int { spec.storageGiB }

    /// GPUs of one render node: 1 NVIDIA GPU (for NVENC) on ``highperf``, none elsewhere.
    public var gpu: Int { spec.gpu }

    /// Segments one render node encodes at once.
    ///
    /// ``budget`` and ``standard``: one slot per core (2 and 4), one encoder thread each, because a software
    /// encode at preset medium keeps about one core busy at 720p/1080p and separate segments scale linearly; the
    /// memory holds the worst case, 2 GiB per slot (4K x265), with 2 and 4 GiB left for the process, its decoders'
    /// buffers and the page cache.
    /// ``highperf``: 4 slots, which stays within the concurrent NVENC sessions that GeForce drivers allow (5 since
    /// 2023; data-centre GPUs have no cap) and is more than the 2 to 3 sessions that keep one NVENC engine busy,
    /// so the GPU never waits on a slot that is downloading or uploading a segment.
    public var nodeSlots: Int { spec.nodeSlots }

    /// Encoder threads per slot; `nodeSlots × encoderThreadsPerSlot` equals ``cpu`` so software encodes fill the
    /// cores without oversubscribing them.
    ///
    /// 1 on ``budget`` and ``standard`` (one core per slot, see ``nodeSlots``). 2 on ``highperf``: its 4 slots
    /// share 8 cores, so a job pinned to a software encoder (x265, SVT-AV1) still uses every core, and a slot
    /// that runs NVENC uses its cores for decoding and scaling the source.
    public var encoderThreadsPerSlot: Int { spec.encoderThreadsPerSlot }

    /// Jobs the coordinator runs at once; further jobs wait in the queue.
    ///
    /// A job keeps nodes busy only while it is encoding: indexing, splitting, joining and verifying run on the
    /// coordinator alone. More jobs in flight fill the slots during those phases, but each running job holds
    /// about 4× its source on the coordinator's data volume (the source, its segment packets, the encoded
    /// segments and the joined output), budgeted at 25 GiB per job (sources up to ~6 GiB). So the number is
    /// ``coordinatorDataGiB`` / 25: 2, 4 (the 3 to 5 that a standard farm is expected to run) and 6.
    public var maxConcurrentJobs: Int { spec.maxConcurrentJobs }

    /// Jobs that may wait beyond the running ones before the coordinator refuses new ones (8 × ``maxConcurrentJobs``).
    ///
    /// A waiting job costs one database row, so the limit is not about resources: it gives clients a clear refusal
    /// instead of accepting work that would start many hours later (8 rounds of the running jobs).
    public var queueLimit: Int { spec.queueLimit }

    /// Free space, in GiB, below which a process stops taking new work (a node takes no new segments, the
    /// coordinator starts no new job); see ``lowDiskThresholdBytes(volumeBytes:)``.
    ///
    /// For a node this is one worst-case segment (2 GiB, see the type's notes) for each slot: 4, 8 and 8 GiB.
    /// On Akash a node's files count against its lease's ephemeral storage (``storageGiB``), and a container
    /// that outgrows it is evicted; `statvfs` inside the container shows the provider's disk, not that limit,
    /// so a node measures free space as ``storageGiB`` less what its work directory holds.
    public var lowDiskGiB: Int { spec.lowDiskGiB }

    /// Free space, as a percentage of the volume, below which a process stops taking new work.
    ///
    /// 10 % on every tier: a file system close to full slows down and fragments, and the margin absorbs logs and
    /// the writes already in flight when the check fires. It is the larger watermark on big volumes (the
    /// coordinator's data volume, the high-performance node's 100 GiB).
    public var lowDiskPercent: Int { spec.lowDiskPercent }

    /// The coordinator's CPU cores: about one per two running jobs, for verifying outputs (a strict decode of the
    /// whole file) while the others split, join and serve the protocol and the HTTP API.
    public var coordinatorCPU: Int { spec.coordinatorCPU }

    /// The coordinator's memory in GiB: a verifying decode of a 4K file needs up to 1 GiB, plus SQLite, the HTTP
    /// server and 1 MiB transfer chunks for every node slot.
    public var coordinatorMemoryGiB: Int { spec.coordinatorMemoryGiB }

    /// The coordinator's ephemeral storage in GiB: its root file system; everything it keeps is on the data volume.
    public var coordinatorStorageGiB: Int { spec.coordinatorStorageGiB }

    /// The coordinator's persistent data volume in GiB (`--data-dir`): 25 GiB per running job, see
    /// ``maxConcurrentJobs``.
    public var coordinatorDataGiB: Int { spec.coordinatorDataGiB }

    /// The free space, in bytes, below which a process stops taking new work on a volume of `volumeBytes`:
    /// the larger of ``lowDiskGiB`` and ``lowDiskPercent`` of the volume.
    public func lowDiskThresholdBytes(volumeBytes: Int64) -> Int64 {
        let absolute = Int64(lowDiskGiB) << 30
        let relative = volumeBytes / 100 * Int64(lowDiskPercent)
        return max(absolute, relative)
    }

    /// Whether `freeBytes` left on a volume of `volumeBytes` is below this tier's low-disk watermark.
    public func isLowOnDisk(freeBytes: Int64, volumeBytes: Int64) -> Bool {
        freeBytes < lowDiskThresholdBytes(volumeBytes: volumeBytes)
    }

    /// Every tier's numbers, in the order of ``allCases``.
    public static var table: [TierSpec] { allCases.map(\.spec) }
}

/// The numbers of one tier, as `farm tiers --json` prints them; see ``Tier`` for why each has its value.
public struct TierSpec: Sendable, Codable, Equatable {
    /// The tier these numbers belong to.
    public var tier: Tier
    /// CPU cores of one render node.
    public var cpu: Int
    /// Memory of one render node, in GiB.
    public var memoryGiB: Int
    /// Ephemeral storage of one render node, in GiB.
    public var storageGiB: Int
    /// GPUs of one render node (NVIDIA, for NVENC).
    public var gpu: Int
    /// Segments one render node encodes at once.
    public var nodeSlots: Int
    /// Encoder threads per slot.
    public var encoderThreadsPerSlot: Int
    /// Jobs the coordinator runs at once.
    public var maxConcurrentJobs: Int
    /// Jobs that may wait beyond the running ones.
    public var queueLimit: Int
    /// Low-disk watermark in GiB.
    public var lowDiskGiB: Int
    /// Low-disk watermark as a percentage of the volume.
    public var lowDiskPercent: Int
    /// CPU cores of the coordinator.
    public var coordinatorCPU: Int
    /// Memory of the coordinator, in GiB.
    public var coordinatorMemoryGiB: Int
    /// Ephemeral (root) storage of the coordinator, in GiB.
    public var coordinatorStorageGiB: Int
    /// Persistent data volume of the coordinator, in GiB.
    public var coordinatorDataGiB: Int

    /// Creates a tier's numbers.
    public init(
        tier: Tier, cpu: Int, memoryGiB: Int, storageGiB: Int, gpu: Int,
        nodeSlots: Int, encoderThreadsPerSlot: Int, maxConcurrentJobs: Int, queueLimit: Int,
        lowDiskGiB: Int, lowDiskPercent: Int,
        coordinatorCPU: Int, coordinatorMemoryGiB: Int, coordinatorStorageGiB: Int, coordinatorDataGiB: Int
    ) {
        self.tier = tier
        self.cpu = cpu
        self.memoryGiB = memoryGiB
        self.storageGiB = storageGiB
        self.gpu = gpu
        self.nodeSlots = nodeSlots
        self.encoderThreadsPerSlot = encoderThreadsPerSlot
        self.maxConcurrentJobs = maxConcurrentJobs
        self.queueLimit = queueLimit
        self.lowDiskGiB = lowDiskGiB
        self.lowDiskPercent = lowDiskPercent
        self.coordinatorCPU = coordinatorCPU
        self.coordinatorMemoryGiB = coordinatorMemoryGiB
        self.coordinatorStorageGiB = coordinatorStorageGiB
        self.coordinatorDataGiB = coordinatorDataGiB
    }
}
