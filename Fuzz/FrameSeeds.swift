// Writes the frame fuzzer's seed corpus (Fuzz/corpus/frame): every sample message of the protocol tests
// (Tests/ProtocolTests/Samples.swift) as a frame, fed byte by byte and in reads of 63 bytes, one stream of
// them all, and the malformed frames the fleet test sends. Run by `scripts/fuzz.sh --seeds`.

import FarmProtocol
import Foundation
import NIOCore

@main
struct FrameSeeds {
    static func main() throws {
        let directory = CommandLine.arguments.dropFirst().first ?? "Fuzz/corpus/frame"
        func write(_ name: String, control: UInt8, _ bytes: [UInt8]) throws {
            try Data([control] + bytes).write(to: URL(fileURLWithPath: "\(directory)/\(name)"))
        }
        var all = ByteBuffer()
        for (index, message) in Samples.small.enumerated() {
            var frame = ByteBuffer()
            try FarmWire.writeFrame(message, into: &frame)
            all.writeImmutableBuffer(frame)
            let bytes = Array(frame.readableBytesView)
            try write("\(String(format: "%02d", index))-\(message.name)", control: 0, bytes)
            try write("\(String(format: "%02d", index))-\(message.name)-reads63", control: 63 << 2, bytes)
        }
        try write("all-messages", control: 0xFC, Array(all.readableBytesView))
        // Small maxima (control & 3): the size check before the body.
        try write("all-messages-max64", control: 0x02 | 0x10, Array(all.readableBytesView))
        try write("oversize-header", control: 0, [0x06, 0x40, 0x00, 0x00, 0x02])
        try write("unknown-type", control: 0, [0x00, 0x00, 0x00, 0x01, 0xEE])
        try write("zero-length", control: 0, [0x00, 0x00, 0x00, 0x00])
        try write("garbage-hello", control: 0, [0x00, 0x00, 0x00, 0x05, 0x02, 0x00, 0x01, 0x02, 0x03])
    }
}
