internal import FarmMedia

/// The encoder options a node takes from an assignment: an allow-list, so that no assignment can make an
/// encoder read or write a file of its choosing (x264's `stats` or `qpfile`, x265's `csv`, `dump-yuv` or
/// `analysis-save`, FFmpeg's `passlogfile`, and whatever such key a later encoder version adds).
///
/// A top-level key must be one of ``topLevel``; the value of a `*-params` key is split at `:` into
/// `key=value` pairs (a bare `key` or `no-key` is a flag) and each key must be one of that encoder's
/// ``parameters``. Values may not name a path either: none of them may hold `/`.
enum EncoderOptionPolicy {
    /// FFmpeg `AVDictionary` keys an assignment may carry, besides the `*-params` strings.
    static let topLevel: Set<String> = [
        "tune", "profile", "level", "g", "keyint_min", "bf", "refs", "sc_threshold", "forced-idr", "rc-lookahead",
        "aq-mode", "tier", "rc", "cq", "qp", "b", "maxrate", "bufsize", "bluray-compat", "x264-params",
        "x265-params", "svtav1-params",
    ]

    /// The `key=value` keys allowed inside each `*-params` option: rate control, GOP structure, analysis
    /// depth and logging, nothing that names a file.
    static let parameters: [String: Set<String>] = [
        "x264-params": [
            "bframes", "b-adapt", "b-pyramid", "ref", "cabac", "scenecut", "keyint", "min-keyint", "open-gop",
            "log", "aq-mode", "aq-strength", "rc-lookahead", "weightp", "weightb", "me", "subme", "merange",
            "trellis", "deblock", "psy-rd", "psy", "mbtree", "8x8dct", "partitions", "direct", "threads",
            "sliced-threads", "sync-lookahead", "nal-hrd", "vbv-maxrate", "vbv-bufsize", "crf", "qp", "intra-refresh",
            "no-scenecut", "force-cfr",
        ],
        "x265-params": [
            "log-level", "open-gop", "keyint", "min-keyint", "scenecut", "bframes", "b-adapt", "ref", "rc-lookahead",
            "aq-mode", "aq-strength", "repeat-headers", "aud", "pools", "frame-threads", "wpp", "pmode", "pme",
            "no-open-gop", "info", "no-info", "hrd", "vbv-maxrate", "vbv-bufsize", "crf", "qp", "rd", "psy-rd",
            "psy-rdoq", "sao", "no-sao", "strong-intra-smoothing", "weightp", "weightb", "me", "subme", "merange",
            "limit-refs", "rect", "amp", "early-skip", "cutree", "no-cutree", "lookahead-slices", "ctu",
            "min-cu-size", "tu-intra-depth", "tu-inter-depth", "deblock", "range", "colorprim", "transfer",
            "colormatrix", "chromaloc",
        ],
        "svtav1-params": [
            "irefresh-type", "keyint", "tune", "lp", "scd", "enable-overlays", "film-grain", "film-grain-denoise",
            "enable-tf", "enable-qm", "qm-min", "qm-max", "preset", "crf", "lookahead", "pin", "fast-decode",
            "enable-cdef", "enable-restoration", "aq-mode", "hierarchical-levels", "pred-struct", "rc", "mbr",
        ],
    ]

    /// Throws a one-line ``MediaError`` naming the first option that is not allowed.
    static func check(_ options: [String: String]) throws {
        for key in options.keys.sorted() {
            let value = options[key] ?? ""
            guard topLevel.contains(key) else {
                throw refusal("encoder option \"\(key)\" is not on the node's allow-list")
            }
            guard !value.contains("/") else {
                throw refusal("encoder option \"\(key)\" has a value with a path separator")
            }
            guard let allowed = parameters[key] else { continue }
            for pair in value.split(separator: ":", omittingEmptySubsequences: true) {
                let name = String(pair.split(separator: "=", maxSplits: 1).first ?? "")
                guard allowed.contains(name) || (name.hasPrefix("no-") && allowed.contains(String(name.dropFirst(3))))
                else {
                    throw refusal("encoder option \"\(key)\" key \"\(name)\" is not on the node's allow-list")
                }
            }
        }
    }

    private static func refusal(_ message: String) -> MediaError {
        MediaError(.unsupported, "assignment refused: \(message) (it could make the encoder read or write files)")
    }
}
