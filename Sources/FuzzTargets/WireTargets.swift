import Foundation
import Wire

// The two request decoders (Proto/WIRE.md §5 and §6.1). Rejections are expected; what must
// hold is that every rejection is a well-formed problem and every acceptance is exact.

/// `wire-binary`: a binary request body. An accepted body re-encodes to the same bytes (the
/// format has one encoding per request: padding zero, lengths exact), matches the schema its
/// own counts describe and no other, and decodes the same from a misaligned copy.
public func fuzzBinaryRequest(_ data: UnsafeRawBufferPointer) {
    let limits = WireLimits(maxCandidates: 1024)
    let request: ScoreRequest
    do {
        request = try WireCodec.decodeRequest(data, encoding: .binary, limits: limits)
    } catch {
        requireProblem(error, statuses: [400, 413])
        return
    }
    let v = request.values(requestBody: data)
    let n = request.candidates
    require(n >= 1 && n <= limits.maxCandidates, "accepted \(n) candidates")
    require(v.itemIDs.count % n == 0 && v.itemDense.count % n == 0, "item sections are not candidates × width")
    require((v.contextDense + v.itemDense).allSatisfy(\.isFinite), "accepted a non-finite dense value")
    var encoded: [UInt8] = []
    WireCodec.encodeBinaryRequest(requestID: request.requestID, scene: request.scene, contextIDs: v.contextIDs,
                                  contextDense: v.contextDense, itemIDs: v.itemIDs, itemDense: v.itemDense,
                                  candidates: n, into: &encoded)
    require(encoded.elementsEqual(data), "accepted body does not re-encode to the same \(data.count) bytes")
    requireSchemaCheck(request, contextIDs: v.contextIDs.count, contextDense: v.contextDense.count,
                       itemIDs: v.itemIDs.count / n, itemDense: v.itemDense.count / n)
    // The decoder promises any alignment: decode again one byte off.
    let shifted = UnsafeMutableRawBufferPointer.allocate(byteCount: data.count + 1, alignment: 8)
    defer { shifted.deallocate() }
    let view = UnsafeRawBufferPointer(rebasing: shifted[1...])
    UnsafeMutableRawBufferPointer(mutating: view).copyMemory(from: data)
    guard let again = try? WireCodec.decodeBinaryRequest(view, limits: limits) else {
        require(false, "accepted body is refused at another alignment")
        return
    }
    let w = again.values(requestBody: view)
    require(again.requestID == request.requestID && again.scene == request.scene && again.candidates == n
            && w.contextIDs == v.contextIDs && w.itemIDs == v.itemIDs
            && bitsEqual(w.contextDense, v.contextDense) && bitsEqual(w.itemDense, v.itemDense),
            "decoding at another alignment gives other values")
}

/// `wire-json`: a JSON request body. An accepted body whose candidates agree on their counts
/// passes the schema check those counts describe; written back as JSON, and as binary, it
/// decodes to the same values (dense values bit for bit: float32 round-trips through its
/// shortest decimal).
public func fuzzJSONRequest(_ data: UnsafeRawBufferPointer) {
    let limits = WireLimits(maxCandidates: 1024)
    let request: ScoreRequest
    do {
        request = try WireCodec.decodeRequest(data, encoding: .json, limits: limits)
    } catch {
        requireProblem(error, statuses: [400, 413])
        return
    }
    let v = request.values(requestBody: data)
    let n = request.candidates
    require(n >= 1 && n <= limits.maxCandidates, "accepted \(n) candidates")
    require((v.contextDense + v.itemDense).allSatisfy(\.isFinite), "accepted a non-finite dense value")
    // Uniform candidates are those that pass the check for the average widths.
    guard v.itemIDs.count % n == 0, v.itemDense.count % n == 0 else { return }
    let schema = WireSchema(contextIDs: v.contextIDs.count, contextDense: v.contextDense.count,
                            itemIDs: v.itemIDs.count / n, itemDense: v.itemDense.count / n)
    guard (try? request.check(against: schema)) != nil else { return }
    requireSchemaCheck(request, contextIDs: schema.contextIDs, contextDense: schema.contextDense,
                       itemIDs: schema.itemIDs, itemDense: schema.itemDense)

    let text = jsonRequest(request, v, itemIDs: schema.itemIDs, itemDense: schema.itemDense)
    let again: ScoreRequest
    do {
        again = try text.withUnsafeBytes { try WireCodec.decodeJSONRequest($0, limits: limits) }
    } catch {
        require(false, "the request written back as JSON is refused: \(error); \(String(decoding: text, as: UTF8.self))")
        return
    }
    let w = text.withUnsafeBytes { again.values(requestBody: $0) }
    require(again.requestID == request.requestID && again.scene == request.scene && again.candidates == n
            && w.contextIDs == v.contextIDs && w.itemIDs == v.itemIDs
            && bitsEqual(w.contextDense, v.contextDense) && bitsEqual(w.itemDense, v.itemDense),
            "JSON written back decodes to other values")

    guard schema.contextIDs <= Int(UInt16.max), schema.contextDense <= Int(UInt16.max),
          schema.itemIDs <= Int(UInt16.max), schema.itemDense <= Int(UInt16.max) else { return }
    var binary: [UInt8] = []
    WireCodec.encodeBinaryRequest(requestID: request.requestID, scene: request.scene, contextIDs: v.contextIDs,
                                  contextDense: v.contextDense, itemIDs: v.itemIDs, itemDense: v.itemDense,
                                  candidates: n, into: &binary)
    guard let fromBinary = try? binary.withUnsafeBytes({ try WireCodec.decodeBinaryRequest($0, limits: limits) }) else {
        require(false, "an accepted JSON request is refused as binary")
        return
    }
    let b = binary.withUnsafeBytes { fromBinary.values(requestBody: $0) }
    require(fromBinary.requestID == request.requestID && fromBinary.scene == request.scene
            && b.contextIDs == v.contextIDs && b.itemIDs == v.itemIDs
            && bitsEqual(b.contextDense, v.contextDense) && bitsEqual(b.itemDense, v.itemDense),
            "the JSON request as binary decodes to other values")
}

/// The schema the request's counts describe passes; one more of any count does not.
private func requireSchemaCheck(_ request: ScoreRequest, contextIDs: Int, contextDense: Int, itemIDs: Int, itemDense: Int) {
    let own = WireSchema(contextIDs: contextIDs, contextDense: contextDense, itemIDs: itemIDs, itemDense: itemDense)
    require((try? request.check(against: own)) != nil, "request fails the schema of its own counts \(own)")
    for field in 0..<4 {
        var other = own
        switch field {
        case 0: other.contextIDs += 1
        case 1: other.contextDense += 1
        case 2: other.itemIDs += 1
        default: other.itemDense += 1
        }
        do {
            try request.check(against: other)
            require(false, "request passes the schema \(other), its counts are \(own)")
        } catch {
            requireProblem(error, statuses: [422])
        }
    }
}

/// A wire error is a problem (RFC 9457) with one of `statuses`, whose JSON parses back to it.
func requireProblem(_ error: WireError, statuses: Set<Int>) {
    require(statuses.contains(error.status), "unexpected status \(error.status): \(error)")
    require(!error.detail.isEmpty && WireErrorTitles.known(error), "problem without detail or title: \(error)")
    let json = error.problemJSON()
    guard let object = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] else {
        require(false, "problem JSON does not parse: \(String(decoding: json, as: UTF8.self))")
        return
    }
    require(object["status"] as? Int == error.status && object["detail"] as? String == error.detail
            && object["type"] as? String == error.type,
            "problem JSON does not say what the error says: \(String(decoding: json, as: UTF8.self))")
}

private enum WireErrorTitles {
    static func known(_ error: WireError) -> Bool { error.title != "Error" }
}

func bitsEqual(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}

/// A uniform request as JSON text (WIRE.md §6.1), floats as their shortest round-trip decimal.
private func jsonRequest(_ request: ScoreRequest, _ v: (contextIDs: [UInt32], contextDense: [Float], itemIDs: [UInt32], itemDense: [Float]),
                         itemIDs: Int, itemDense: Int) -> [UInt8] {
    func list<T>(_ values: ArraySlice<T>, _ show: (T) -> String) -> String { "[" + values.map(show).joined(separator: ",") + "]" }
    let ids = { (x: UInt32) in String(x) }, dense = { (x: Float) in x.description }
    var candidates: [String] = []
    for c in 0..<request.candidates {
        candidates.append("{\"ids\":\(list(v.itemIDs[(c * itemIDs)..<((c + 1) * itemIDs)], ids)),"
                          + "\"dense\":\(list(v.itemDense[(c * itemDense)..<((c + 1) * itemDense)], dense))}")
    }
    let text = "{\"scene\":\"\(request.scene)\",\"request_id\":\(request.requestID),"
        + "\"context\":{\"ids\":\(list(v.contextIDs[...], ids)),\"dense\":\(list(v.contextDense[...], dense))},"
        + "\"candidates\":[\(candidates.joined(separator: ","))]}"
    return Array(text.utf8)
}
