import FarmProtocol
import NIOCore

/// One or more values of every message type, with optionals both present and absent.
enum Samples {
    static let settings = EncodeSettings(
        codec: "h264",
        encoder: "libx264",
        crf: 23,
        preset: "medium",
        pixelFormat: "yuv420p",
        width: 1920,
        height: 1080,
        timeBaseNum: 1,
        timeBaseDen: 90_000,
        frameRateNum: 30_000,
        frameRateDen: 1001,
        sampleAspectNum: 1,
        sampleAspectDen: 1,
        colorRange: 1,
        colorPrimaries: 1,
        colorTransfer: 1,
        colorSpace: 1,
        chromaLocation: 1,
        gopSize: 250,
        threads: 4,
        options: ["x264-params": "keyint=250:min-keyint=250", "tune": "film", "profile": "high"]
    )

    static let digest = Array(0..<32 as Range<UInt8>)
    /// A segment checksum's worth of bytes.
    static let checksum = Array(100..<116 as Range<UInt8>)

    static func bytes(count: Int) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: count)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { bytes in
            for index in 0..<count {
                bytes[index] = UInt8(truncatingIfNeeded: index &* 31 &+ index >> 8)
            }
            return count
        }
        return buffer
    }

    /// Small messages, one or more of each type.
    static let small: [Message] = [
        .challenge(Challenge(coordinatorID: "coord-α", nonce: digest)),
        .hello(
            Hello(
                nodeID: "node-1",
                proof: digest.reversed(),
                slots: 4,
                threads: 2,
                capabilitiesJSON: #"{"encoders":["libx264","h264_vaapi"]}"#
            )
        ),
        .welcome(Welcome(coordinatorID: "coord-α", heartbeatSeconds: 5, proof: digest)),
        .reject(Reject(reason: "bad join proof")),
        .reject(Reject(reason: "")),
        .assign(
            Assign(
                taskID: 42,
                jobID: "job-7",
                segmentIndex: 3,
                attempt: 1,
                settings: settings,
                startPTS: -3003,
                endPTS: 900_900,
                expectedFrames: 300,
                byteLength: 12_345_678,
                checksum: checksum
            )
        ),
        .assign(
            Assign(
                taskID: .max,
                jobID: "job-8",
                segmentIndex: 0,
                attempt: 0,
                settings: EncodeSettings(
                    codec: "av1",
                    encoder: "libsvtav1",
                    crf: 30,
                    preset: "8",
                    pixelFormat: "yuv420p10le",
                    width: 640,
                    height: 360,
                    timeBaseNum: 1,
                    timeBaseDen: 1000,
                    frameRateNum: 25,
                    frameRateDen: 1
                ),
                startPTS: .min,
                endPTS: nil,
                expectedFrames: 0,
                byteLength: 0,
                checksum: checksum
            )
        ),
        .data(DataChunk(taskID: 42, bytes: bytes(count: 1000))),
        .data(DataChunk(taskID: 43, bytes: ByteBuffer())),
        .result(
            TaskResult(
                taskID: 42,
                encoder: "libx264",
                frames: 300,
                byteLength: 2_000_000,
                checksum: checksum,
                decodeSeconds: 1.25,
                encodeSeconds: 9.875,
                fallbackReason: "h264_vaapi: no render node"
            )
        ),
        .result(
            TaskResult(
                taskID: 43,
                encoder: "h264_vaapi",
                frames: 1,
                byteLength: 1,
                checksum: checksum,
                decodeSeconds: 0,
                encodeSeconds: -0.0,
                fallbackReason: nil
            )
        ),
        .failure(TaskFailure(taskID: 42, reason: "decoder error: Invalid data", retryable: true)),
        .failure(TaskFailure(taskID: 43, reason: "out of disk", retryable: false)),
        .failure(TaskFailure(taskID: 44, reason: "node is draining", retryable: true, kind: .refused)),
        .failure(TaskFailure(taskID: 45, reason: "cannot store the segment", retryable: true, kind: .node)),
        .cancel(taskID: 42),
        .heartbeat(Heartbeat(activeTasks: [])),
        .heartbeat(
            Heartbeat(activeTasks: [
                TaskProgress(taskID: 1, framesDone: 0),
                TaskProgress(taskID: 2, framesDone: 150),
                TaskProgress(taskID: .max, framesDone: .max),
            ])
        ),
        .drain,
    ]
}
