// libFuzzer target: the HTTP API's job submission input (Sources/Coordinator/HTTP/Submission.swift), the
// JSON body of `POST /jobs` and the same fields given as text (forms, multipart parts, query parameters).
//
// Built by scripts/fuzz.sh together with Submission.swift and the files it needs, so it reaches their
// internals. What must hold for any input:
// - nothing traps: a bad body is an `APIError` with status 400 and a message saying what was wrong;
// - an accepted submission holds only values the encoder accepts (codec, CRF range, preset, container,
//   segment length), so nothing downstream sees a value the API should have refused.

import Foundation
import HTTPTypes

@_cdecl("LLVMFuzzerTestOneInput")
public func farmSubmissionFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = Data(bytes: data, count: size)
    check { () throws(APIError) in try Submission.parse(json: body) }

    // The same bytes as text fields: "key=value" lines, the way a form or a query string arrives.
    var fields: [String: String] = [:]
    for line in String(decoding: body, as: UTF8.self).split(separator: "\n") {
        let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        fields[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
    }
    check { () throws(APIError) in try Submission.parse(text: fields) }
    return 0
}

private func check(_ parse: () throws(APIError) -> Submission) {
    let submission: Submission
    do {
        submission = try parse()
    } catch {
        precondition(error.status == .badRequest, "a bad submission answered \(error.status), not 400")
        precondition(!error.message.isEmpty, "a 400 without a message")
        return
    }
    if let source = submission.source { precondition(!source.isEmpty) }
    if let crf = submission.crf { precondition(Submission.crfRange(submission.codec).contains(crf), "crf \(crf)") }
    precondition(Submission.presets.contains(submission.preset), "preset \(submission.preset)")
    precondition(Submission.containers.contains(submission.container), "container \(submission.container)")
    if let seconds = submission.segmentSeconds {
        precondition(seconds.isFinite && seconds >= 0.5 && seconds <= 3600, "segment_seconds \(seconds)")
    }
}
