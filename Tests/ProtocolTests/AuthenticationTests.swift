import FarmProtocol
import NIOCore
import Testing

@Suite struct JoinProofTests {
    private let token = "correct horse battery staple"
    private let nonce = Array(0..<32 as Range<UInt8>)

    @Test func knownAnswer() {
        // Computed independently (Python's hmac module) from the construction documented in docs/protocol.md.
        #expect(
            SegmentChecksum.hex(JoinProof.node(token: self.token, nonce: self.nonce, nodeID: "node-1"))
                == "33dfde8265a499c8383b2cc7ac830c7d919d33bdf1e7675c191312c8254e6708"
        )
        #expect(
            SegmentChecksum.hex(JoinProof.coordinator(token: self.token, nonce: self.nonce, nodeID: "node-1"))
                == "87ef5b1dd835046abc5532678581b8b315a5ab39d71c36ad72df5efa268d2ee7"
        )
    }

    @Test func sameInputsGiveTheSameProof() {
        let proof = JoinProof.node(token: self.token, nonce: self.nonce, nodeID: "node-1")
        #expect(proof.count == JoinProof.byteCount)
        #expect(proof == JoinProof.node(token: self.token, nonce: self.nonce, nodeID: "node-1"))
    }

    @Test func anyDifferentInputGivesADifferentProof() {
        let proof = JoinProof.node(token: self.token, nonce: self.nonce, nodeID: "node-1")
        var otherNonce = self.nonce
        otherNonce[31] ^= 1
        #expect(proof != JoinProof.node(token: "another token", nonce: self.nonce, nodeID: "node-1"))
        #expect(proof != JoinProof.node(token: self.token, nonce: otherNonce, nodeID: "node-1"))
        #expect(proof != JoinProof.node(token: self.token, nonce: self.nonce, nodeID: "node-2"))
        #expect(proof != JoinProof.coordinator(token: self.token, nonce: self.nonce, nodeID: "node-1"))
    }

    @Test func verifyComparesWholeProofs() {
        let proof = JoinProof.node(token: self.token, nonce: self.nonce, nodeID: "node-1")
        #expect(JoinProof.verify(proof, JoinProof.node(token: self.token, nonce: self.nonce, nodeID: "node-1")))
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

@Suite struct SegmentChecksumTests {
    @Test func sha256OfABC() {
        var checksum = SegmentChecksum()
        checksum.update(ByteBuffer(string: "abc"))
        #expect(
            SegmentChecksum.hex(checksum.finalize())
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        )
    }

    @Test func sha256OfNothing() {
        #expect(
            SegmentChecksum.hex(SegmentChecksum().finalize())
                == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
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

    @Test func hexIsLowercaseTwoDigitsPerByte() {
        #expect(SegmentChecksum.hex([0x00, 0x0f, 0xa0, 0xff]) == "000fa0ff")
        #expect(SegmentChecksum.hex([]) == "")
    }
}
