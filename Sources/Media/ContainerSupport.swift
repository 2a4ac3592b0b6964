package import CFFmpeg

/// A source stream the output container cannot hold.
struct StorageProblem {
    var message: String
    /// Audio, subtitles and further video must be kept (the job fails without them); data and
    /// attachments are dropped with the message.
    var isRequired: Bool
}

extension AssemblyRequest {
    /// One line for each audio, subtitle or video stream of the source that an output in `container`
    /// (FFmpeg's muxer name, as `container(forOutput:)` gives it) cannot hold, e.g.
    /// "stream 2 (subtitle: ass) cannot be stored in MP4; choose .mkv or drop it". Empty when assembly
    /// will keep every such stream. Cheap (the file's header only): meant for submission, before any
    /// encoding, where assembly would otherwise find it at the end.
    public static func unsupportedStreams(sourcePath: String, container: String) throws -> [String] {
        guard let format = av_guess_format(container, nil, nil) else {
            throw MediaError(.unsupported, "\(container) is not an output container FFmpeg knows")
        }
        try checkRegularFile(sourcePath)
        let input = try InputFile(path: sourcePath)
        let video = input.bestVideoStream()
        return (0..<input.streamCount).compactMap { i in
            guard i != video else { return nil }
            guard let problem = storageProblem(input.stream(i), index: i, format: format, container: container), problem.isRequired
            else { return nil }
            return problem.message
        }
    }

    /// Throws a one-line `.unsupported` error naming the source, the first stream `container` cannot
    /// hold and how many more there are; returns when there is none.
    public static func checkStreams(sourcePath: String, container: String) throws {
        let problems = try unsupportedStreams(sourcePath: sourcePath, container: container)
        guard let first = problems.first else { return }
        let more = problems.count > 1 ? " (and \(problems.count - 1) more)" : ""
        throw MediaError(.unsupported, "\(sourcePath): \(first)\(more)")
    }

    /// What stops stream `index` from being copied into `format`, or nil when nothing does.
    static func storageProblem(
        _ stream: UnsafeMutablePointer<AVStream>, index: Int, format: UnsafePointer<AVOutputFormat>, container: String
    ) -> StorageProblem? {
        let par = stream.pointee.codecpar.pointee
        guard avformat_query_codec(format, par.codec_id, FF_COMPLIANCE_NORMAL) != 1 else { return nil }
        let codec = String(cString: avcodec_get_name(par.codec_id))
        let kind = av_get_media_type_string(par.codec_type).map { String(cString: $0) } ?? "unknown"
        let name = displayName(container)
        switch par.codec_type {
        case AVMEDIA_TYPE_AUDIO, AVMEDIA_TYPE_SUBTITLE, AVMEDIA_TYPE_VIDEO:
            let advice = container == "matroska" ? "drop it" : "choose .mkv or drop it"
            return StorageProblem(message: "stream \(index) (\(kind): \(codec)) cannot be stored in \(name); \(advice)", isRequired: true)
        default:
            return StorageProblem(message: "stream \(index) (\(kind): \(codec)): not supported by \(name)", isRequired: false)
        }
    }

    private static func displayName(_ container: String) -> String {
        switch container {
        case "mp4": "MP4"
        case "mov": "MOV"
        case "matroska": "Matroska"
        default: container
        }
    }
}
