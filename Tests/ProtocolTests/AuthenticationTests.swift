import FarmProtocol
import NIOCore
import Testing

@Suite struct JoinProofTests {
    private let token = "correct horse battery staple"
    private let nonce = Array(0..<32 as Range<UInt8>)
    /// The binding of a stand-in certificate: what it hashes does not matter to the proof, only its bytes do.
    private let tls = ChannelBinding.tlsServerEndPoint(certificateDER: Array("not really a certificate".utf8))

    private func node(
        token: String? = nil, nonce: [UInt8]? = nil, nodeID: String = "node-1", binding: ChannelBinding? = nil
    ) -> [UInt8] {
        JoinProof.node(
            token: token ?? self.token, nonce: nonce ?? self.nonce, nodeID: nodeID, channelBinding: binding ?? self.tls)
    }

    @Test func knownAnswer() {
        // Computed independently (Python's hmac and hashlib) from the construction documented in docs/protocol.md.
        #expect(self.tls.description == "d6182255e5739d55fc9781759c7a823d4dff3d2b7d17949e7085ee7c0cc22acf")
        #expect(self.tls.bytes.prefix(21) == ArraySlice("tls-server-end-point:".utf8))
        #expect(
            Hex.encode(self.node(binding: .plainTCP))
                == "3d482c694f3a79265d632b374edca59a1bfc17aa2c7721a887f40d6543c3a324")
        #expect(
            Hex.encode(
                JoinProof.coordinator(token: self.token, nonce: self.nonce, nodeID: "node-1", channelBinding: .plainTCP))
                == "205c78ed1567db8a3fdce16d5bc88a4afa28979734ab1654f3598bc11697393e")
        #expect(
            Hex.encode(self.node())
                == "536d5d6979025a43bd400832d782617ea1b6e7d61ce225553b157397e0bd6917")
        #expect(
            Hex.encode(
                JoinProof.coordinator(token: self.token, nonce: self.nonce, nodeID: "node-1", channelBinding: self.tls))
                == "1d0b67a7e805927da681f6f69b2101db013c61f5473beeaff79a391497905a30")
    }

    @Test func hexRoundTripsAndPinsParse() {
        let bytes: [UInt8] = [0x00, 0x0f, 0xa5, 0xff]
        #expect(Hex.encode(bytes) == "000fa5ff")
        #expect(Hex.decode("000FA5ff") == bytes)
        #expect(Hex.decode("abc") == nil && Hex.decode("zz") == nil)
        let pin = String(repeating: "ab", count: 32)
        #expect(CoordinatorKeyPin.parse(" " + pin.uppercased() + "\n") == pin)
        #expect(CoordinatorKeyPin.parse(stride(from: 0, to: 64, by: 2).map { _ in "AB" }.joined(separator: ":")) == pin)
        #expect(CoordinatorKeyPin.parse(String(pin.dropLast())) == nil)
        #expect(CoordinatorKeyPin.parse(String(repeating: "g", count: 64)) == nil)
        #expect(JoinProof.credentialSecret([0x01, 0xab]) == "credential:01ab")
    }

    @Test func sameInputsGiveTheSameProof() {
        let proof = self.node()
        #expect(proof.count == JoinProof.byteCount)
        #expect(proof == self.node())
    }

    @Test func anyDifferentInputGivesADifferentProof() {
        let proof = self.node()
        var otherNonce = self.nonce
        otherNonce[31] ^= 1
        #expect(proof != self.node(token: "another token"))
        #expect(proof != self.node(nonce: otherNonce))
        #expect(proof != self.node(nodeID: "node-2"))
        #expect(
            proof != JoinProof.coordinator(token: self.token, nonce: self.nonce, nodeID: "node-1", channelBinding: self.tls))
    }

    /// A man in the middle who terminates TLS presents its own certificate to the node: the node binds its proof to
    /// that certificate, the coordinator expects one bound to its own, so the relayed proof does not verify, and
    /// neither does a plain-TCP proof relayed into TLS (a downgrade).
    @Test func aProofForAnotherCertificateIsRejected() {
        let coordinatorCertificate = ChannelBinding.tlsServerEndPoint(certificateDER: Array("coordinator".utf8))
        let proxyCertificate = ChannelBinding.tlsServerEndPoint(certificateDER: Array("proxy".utf8))
        #expect(coordinatorCertificate != proxyCertificate)
        let expected = self.node(binding: coordinatorCertificate)
        #expect(JoinProof.verify(self.node(binding: coordinatorCertificate), expected))
        #expect(!JoinProof.verify(self.node(binding: proxyCertificate), expected))
        #expect(!JoinProof.verify(self.node(binding: .plainTCP), expected))
        // And the other way: the coordinator's welcome, made for its certificate, fails at a node that saw the proxy's.
        let welcome = JoinProof.coordinator(
            token: self.token, nonce: self.nonce, nodeID: "node-1", channelBinding: coordinatorCertificate)
        #expect(
            !JoinProof.verify(
                welcome,
                JoinProof.coordinator(
                    token: self.token, nonce: self.nonce, nodeID: "node-1", channelBinding: proxyCertificate)))
    }

    @Test func bindingsDescribeThemselves() {
        #expect(ChannelBinding.plainTCP.isPlainTCP)
        #expect(ChannelBinding.plainTCP.description == "plain TCP")
        #expect(!self.tls.isPlainTCP)
        #expect(self.tls.bytes.count == 21 + 32)
    }

    @Test func verifyComparesWholeProofs() {
        let proof = self.node()
        #expect(JoinProof.verify(proof, self.node()))
        for index in proof.indices {
            var tampered = proof
            tampered[index] ^= 0x80
            #expect(!JoinProof.verify(tampered, proof))
        }
        #expect(!JoinProof.verify(Array(proof.dropLast()), proof))
        #expect(!JoinProof.verify([], []))
    }

    @Test func noncesAreFreshAndFullLength() {
        let nonces = (0..<8).map { _ in JoinProof.makeNonce() }
        #expect(nonces.allSatisfy { $0.count == 32 })
        #expect(Set(nonces).count == nonces.count)
    }
}

/// Reference values from another implementation of each hash (Python's `xxhash` package, `sha256sum`).
@Suite struct SegmentChecksumTests {
    @Test func xxh3OfKnownInputs() {
        #expect(Hex.encode(SegmentChecksum().finalize()) == "99aa06d3014798d86001c324468d497f")
        var farm = SegmentChecksum()
        farm.update(ByteBuffer(string: "farm"))
        #expect(Hex.encode(farm.finalize()) == "5b2a3ee31f94adcb6f4d2827d46f6f9f")
        // Long enough for XXH3's striped loop and its internal buffer to wrap many times, fed in uneven pieces.
        let pattern = [UInt8]((0..<1_049_344).map { UInt8($0 % 256) })
        var long = SegmentChecksum()
        var start = 0
        for size in [1, 63, 64, 65, 239, 240, 241, 4_096, 100_003] where start < pattern.count {
            pattern[start..<min(start + size, pattern.count)].withUnsafeBytes { long.update($0) }
            start += size
        }
        pattern[start...].withUnsafeBytes { long.update($0) }
        #expect(Hex.encode(long.finalize()) == "3eb413071bb36356ebd7da7da24295f8")
    }

    @Test func sha256OfKnownInputs() {
        var abc = SHA256Stream()
        abc.update(ByteBuffer(string: "abc"))
        #expect(Hex.encode(abc.finalize()) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            Hex.encode(SHA256Stream().finalize()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func chunksAddUpToTheWhole() {
        let bytes = Samples.bytes(count: 100_000)
        var whole = SegmentChecksum()
        whole.update(bytes)

        var pieces = SegmentChecksum()
        var rest = bytes
        while let piece = rest.readSlice(length: min(7_919, rest.readableBytes)), piece.readableBytes > 0 {
            piece.withUnsafeReadableBytes { pieces.update($0) }
        }
        #expect(pieces.finalize() == whole.finalize())
        #expect(whole.finalize().count == SegmentChecksum.byteCount)
    }

    /// A copy is a value: bytes added to one do not reach the other, and finalizing changes neither.
    @Test func copiesHashIndependently() {
        var first = SegmentChecksum()
        first.update(ByteBuffer(string: "fa"))
        var second = first
        _ = first.finalize()
        first.update(ByteBuffer(string: "rm"))
        second.update(ByteBuffer(string: "xx"))
        #expect(Hex.encode(first.finalize()) == "5b2a3ee31f94adcb6f4d2827d46f6f9f")
        var direct = SegmentChecksum()
        direct.update(ByteBuffer(string: "faxx"))
        #expect(second.finalize() == direct.finalize())
        #expect(second.finalize() != first.finalize())
    }

    @Test func hexIsLowercaseTwoDigitsPerByte() {
        #expect(Hex.encode([0x00, 0x0f, 0xa0, 0xff]) == "000fa0ff")
        #expect(Hex.encode([]) == "")
    }
}
