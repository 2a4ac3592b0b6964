/// A value the API always writes, as `null` when absent. The generated types make nullable
/// properties optional and leave nil ones out of the JSON; the document declares these fields
/// required (`type: [T, 'null']`), so they are wrapped in this type, which encodes nil as `null`.
public struct ExplicitNull<Wrapped: Codable & Hashable & Sendable>: Codable, Hashable, Sendable {
    public var value: Wrapped?

    public init(_ value: Wrapped?) {
        self.value = value
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        value = container.decodeNil() ? nil : try container.decode(Wrapped.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let value { try container.encode(value) } else { try container.encodeNil() }
    }
}
