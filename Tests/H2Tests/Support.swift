import Foundation
@testable import H2

/// A throwaway self-signed certificate for localhost, made with the openssl CLI.
struct TestCertificate {
    let directory: String
    var cert: String { directory + "/cert.pem" }
    var key: String { directory + "/key.pem" }

    static func make() throws -> TestCertificate {
        let dir = NSTemporaryDirectory() + "scenescore-h2-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                       "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem", "-days", "2", "-subj", "/CN=localhost",
                       "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:TRUE"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        precondition(p.terminationStatus == 0, "openssl req failed")
        return TestCertificate(directory: dir)
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }
}

/// Echo handler: answers POST /echo with the body, GET /hello with "hello", everything else 404;
/// refuses bodies declared larger than 1 KiB on /small at header time.
struct EchoHandler: H2RequestHandler {
    func precheck(_ head: H2RequestHead) -> H2Response? {
        if head.path == "/small", let n = head.contentLength, n > 1024 { return H2Response(status: 413) }
        if head.path != "/echo" && head.path != "/hello" && head.path != "/small" { return H2Response(status: 404) }
        return nil
    }
    func respond(to head: H2RequestHead, body: UnsafeRawBufferPointer) -> H2Response {
        if head.path == "/hello" { return H2Response(status: 200, headers: [("x-method", head.method)], body: Array("hello".utf8)) }
        return H2Response(status: 200, headers: [("content-type", head.contentType ?? "none")], body: Array(body))
    }
    func bodyTooLarge(_ head: H2RequestHead, limit: Int) -> H2Response { H2Response(status: 413) }
}
