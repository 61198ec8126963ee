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

/// A throwaway certificate authority that issues leaf certificates for chosen names, made with
/// the openssl CLI: a certificate that chains to a trusted CA but names another host.
struct TestCA {
    let directory: String
    var cert: String { directory + "/ca.pem" }

    static func make() throws -> TestCA {
        let dir = NSTemporaryDirectory() + "scenescore-ca-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", dir + "/ca.key", "-out", dir + "/ca.pem", "-days", "2", "-subj", "/CN=SceneScore test CA",
                     "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"])
        return TestCA(directory: dir)
    }

    /// A leaf certificate and key for `subjectAltName` (e.g. "DNS:localhost,IP:127.0.0.1").
    func issue(_ name: String, subjectAltName: String) throws -> (cert: String, key: String) {
        let base = directory + "/" + name
        try Self.openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                          "-keyout", base + ".key", "-out", base + ".csr", "-subj", "/CN=" + name])
        try Self.openssl(["x509", "-req", "-in", base + ".csr", "-CA", cert, "-CAkey", directory + "/ca.key",
                          "-CAcreateserial", "-out", base + ".pem", "-days", "2",
                          "-extfile", "/dev/stdin"], input: "subjectAltName=\(subjectAltName)\nbasicConstraints=CA:FALSE\n")
        return (base + ".pem", base + ".key")
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }

    private static func openssl(_ arguments: [String], input: String? = nil) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["openssl"] + arguments
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        let stdin = Pipe()
        p.standardInput = stdin
        try p.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try stdin.fileHandleForWriting.close()
        p.waitUntilExit()
        precondition(p.terminationStatus == 0, "openssl \(arguments.first ?? "") failed")
    }
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
