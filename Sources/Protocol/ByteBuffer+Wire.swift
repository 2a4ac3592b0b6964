import NIOCore

// The payload encoding's primitives. Integers are big-endian; strings and byte strings carry a UInt32 length;
// Bool is one byte, 0 or 1; Double is its IEEE 754 bit pattern as a UInt64; an optional is a UInt8 flag (0 or 1)
// followed by the value when the flag is 1; an array is a UInt32 count followed by the elements.
//
// Readers throw `ProtocolError.Code.malformedPayload` naming the field, and never trust a length or a count
// before comparing it with the bytes actually there, so a hostile peer cannot make us allocate more than it sent.

extension ByteBuffer {
    // MARK: Writing

    mutating func writeWireBool(_ value: Bool) {
        self.writeInteger(value ? 1 : 0, as: UInt8.self)
    }

    mutating func writeWireDouble(_ value: Double) {
        self.writeInteger(value.bitPattern)
    }

    mutating func writeWireString(_ value: String) {
        self.writeInteger(UInt32(value.utf8.count))
        self.writeString(value)
    }

    mutating func writeWireBytes(_ value: [UInt8]) {
        self.writeInteger(UInt32(value.count))
        self.writeBytes(value)
    }

    mutating func writeWireBytes(_ value: ByteBuffer) {
        self.writeInteger(UInt32(value.readableBytes))
        self.writeImmutableBuffer(value)
    }

    mutating func writeWireOptional<Value>(_ value: Value?, _ writeValue: (inout ByteBuffer, Value) -> Void) {
        if let value {
            self.writeInteger(1, as: UInt8.self)
            writeValue(&self, value)
        } else {
            self.writeInteger(0, as: UInt8.self)
        }
    }

    mutating func writeWireArray<Elements: Collection>(
        _ elements: Elements,
        _ writeElement: (inout ByteBuffer, Elements.Element) -> Void
    ) {
        self.writeInteger(UInt32(elements.count))
        for element in elements {
            writeElement(&self, element)
        }
    }

    /// Writes a string dictionary as an array of (key, value) pairs sorted by key, so equal dictionaries
    /// always encode to equal bytes.
    mutating func writeWireStringDictionary(_ dictionary: [String: String]) {
        self.writeWireArray(dictionary.sorted { $0.key < $1.key }) { buffer, entry in
            buffer.writeWireString(entry.key)
            buffer.writeWireString(entry.value)
        }
    }

    // MARK: Reading

    mutating func readWireInteger<Integer: FixedWidthInteger>(
        _ field: StaticString,
        as: Integer.Type = Integer.self
    ) throws -> Integer {
        guard let value = self.readInteger(as: Integer.self) else {
            throw ProtocolError.truncated(field, needed: MemoryLayout<Integer>.size, remaining: self.readableBytes)
        }
        return value
    }

    mutating func readWireBool(_ field: StaticString) throws -> Bool {
        switch try self.readWireInteger(field, as: UInt8.self) {
        case 0:
            return false
        case 1:
            return true
        case let byte:
            throw ProtocolError.malformed("\(field): Bool byte is \(byte), must be 0 or 1")
        }
    }

    mutating func readWireDouble(_ field: StaticString) throws -> Double {
        Double(bitPattern: try self.readWireInteger(field, as: UInt64.self))
    }

    /// Reads a UInt32 length and checks that that many bytes follow.
    private mutating func readWireLength(_ field: StaticString) throws -> Int {
        let length = Int(try self.readWireInteger(field, as: UInt32.self))
        guard length <= self.readableBytes else {
            throw ProtocolError.truncated(field, needed: length, remaining: self.readableBytes)
        }
        return length
    }

    mutating func readWireString(_ field: StaticString) throws -> String {
        let length = try self.readWireLength(field)
        do {
            // The length was checked above, so the read cannot come back empty.
            return try self.readUTF8ValidatedString(length: length)!
        } catch {
            throw ProtocolError.malformed("\(field): the \(length)-byte string is not valid UTF-8")
        }
    }

    /// Reads a byte string; with `count`, it must be exactly that long.
    mutating func readWireBytes(_ field: StaticString, count: Int? = nil) throws -> [UInt8] {
        let length = try self.readWireLength(field)
        if let count, length != count {
            throw ProtocolError.malformed("\(field): \(length) bytes, must be exactly \(count)")
        }
        return self.readBytes(length: length)!
    }

    /// Reads a byte string as a slice of this buffer, without copying.
    mutating func readWireSlice(_ field: StaticString) throws -> ByteBuffer {
        let length = try self.readWireLength(field)
        return self.readSlice(length: length)!
    }

    mutating func readWireOptional<Value>(
        _ field: StaticString,
        _ readValue: (inout ByteBuffer) throws -> Value
    ) throws -> Value? {
        switch try self.readWireInteger(field, as: UInt8.self) {
        case 0:
            return nil
        case 1:
            return try readValue(&self)
        case let flag:
            throw ProtocolError.malformed("\(field): optional flag is \(flag), must be 0 or 1")
        }
    }

    /// Reads an array whose every element takes at least `minimumElementSize` bytes; the count is checked against
    /// the remaining bytes before any storage is reserved.
    mutating func readWireArray<Element>(
        _ field: StaticString,
        minimumElementSize: Int,
        _ readElement: (inout ByteBuffer) throws -> Element
    ) throws -> [Element] {
        assert(minimumElementSize > 0)
        let count = Int(try self.readWireInteger(field, as: UInt32.self))
        guard count <= self.readableBytes / minimumElementSize else {
            throw ProtocolError.malformed(
                "\(field): count \(count) needs at least \(count * minimumElementSize) bytes, \(self.readableBytes) remain"
            )
        }
        var elements: [Element] = []
        elements.reserveCapacity(count)
        for _ in 0..<count {
            elements.append(try readElement(&self))
        }
        return elements
    }

    /// Reads a dictionary written by ``writeWireStringDictionary(_:)``; a key given twice is malformed.
    mutating func readWireStringDictionary(_ field: StaticString) throws -> [String: String] {
        // Each entry is two strings, each at least its 4-byte length.
        let entries = try self.readWireArray(field, minimumElementSize: 8) { buffer in
            (key: try buffer.readWireString(field), value: try buffer.readWireString(field))
        }
        var dictionary: [String: String] = [:]
        dictionary.reserveCapacity(entries.count)
        for entry in entries {
            guard dictionary.updateValue(entry.value, forKey: entry.key) == nil else {
                throw ProtocolError.malformed("\(field): key \"\(entry.key)\" appears more than once")
            }
        }
        return dictionary
    }
}

extension ProtocolError {
    static func malformed(_ message: String) -> ProtocolError {
        ProtocolError(code: .malformedPayload, message: message)
    }

    static func truncated(_ field: StaticString, needed: Int, remaining: Int) -> ProtocolError {
        .malformed("\(field): truncated, needs \(needed) bytes, \(remaining) remain")
    }
}
