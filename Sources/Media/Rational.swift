package import CFFmpeg

/// An exact rational number, as FFmpeg's AVRational: time bases, frame rates, aspect ratios.
public struct Rational: Sendable, Hashable, CustomStringConvertible {
    public var num: Int32
    public var den: Int32

    public init(_ num: Int32, _ den: Int32) {
        self.num = num
        self.den = den
    }

    package init(_ r: AVRational) { self.init(r.num, r.den) }
    package var av: AVRational { AVRational(num: num, den: den) }

    /// Whether both parts are positive.
    public var isValid: Bool { num > 0 && den > 0 }
    /// For display only: times are never computed through floating seconds.
    public var doubleValue: Double { den == 0 ? 0 : Double(num) / Double(den) }
    public var description: String { "\(num)/\(den)" }

    /// `value` in this time base rescaled to `other`, rounding to nearest (av_rescale_q).
    public func rescale(_ value: Int64, to other: Rational) -> Int64 {
        av_rescale_q(value, av, other.av)
    }
}

/// FFmpeg's marker for "no timestamp".
public let noTimestamp: Int64 = farm_AV_NOPTS_VALUE()
