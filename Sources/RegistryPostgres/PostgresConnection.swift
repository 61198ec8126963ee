import CLibPQ
import Foundation

/// Why a statement or a connection failed: the server's SQLSTATE when it answered, nil when the
/// connection itself failed (refused, reset, timed out).
struct PostgresError: Error, CustomStringConvertible {
    let sqlState: String?
    let message: String
    var description: String { sqlState.map { "\(message) (SQLSTATE \($0))" } ?? message }

    /// The connection is gone (or never came up): a retry on a new connection may succeed.
    var isConnectionFailure: Bool { sqlState == nil || sqlState!.hasPrefix("08") || sqlState == "57P01" || sqlState == "57P03" }
    var isUniqueViolation: Bool { sqlState == "23505" }
}

/// A statement parameter: text (PostgreSQL parses it as the column's type) or raw bytes (bytea).
enum PostgresValue {
    case text(String?)
    case bytes([UInt8])
}

/// One libpq connection (`PGconn`), used by one thread at a time. Parameters always travel out
/// of line (`PQexecParams`), never spliced into SQL text; bytea goes in binary.
final class PostgresConnection {
    private let conn: OpaquePointer

    /// Connects to `url` (a libpq connection URI or key=value string). Defaults that suit a
    /// server: a 3 s connect timeout and TCP keepalives, so a vanished database is noticed in
    /// seconds; the URL's own settings win.
    init(url: String, applicationName: String = "scenescore") throws(PostgresError) {
        let keys = ["connect_timeout", "keepalives_idle", "keepalives_interval", "keepalives_count", "application_name", "dbname"]
        let values = ["3", "5", "2", "3", applicationName, url]
        let raw = keys.withCStrings { k in values.withCStrings { v in PQconnectdbParams(k, v, 1) } }
        guard let raw else { throw PostgresError(sqlState: nil, message: "libpq could not allocate a connection") }
        guard PQstatus(raw) == CONNECTION_OK else {
            let message = Self.trimmed(PQerrorMessage(raw))
            PQfinish(raw)
            throw PostgresError(sqlState: nil, message: message)
        }
        // Server NOTICEs (e.g. "relation already exists, skipping") would go to stderr.
        PQsetNoticeProcessor(raw, { _, _ in }, nil)
        conn = raw
    }

    deinit { PQfinish(conn) }

    var isHealthy: Bool { PQstatus(conn) == CONNECTION_OK }

    /// Runs one statement and returns its rows (text format, or binary with `binaryResult`).
    @discardableResult
    func execute(_ sql: String, _ parameters: [PostgresValue] = [], binaryResult: Bool = false) throws(PostgresError) -> PostgresResult {
        let result = Self.withParameters(parameters) { values, lengths, formats in
            PQexecParams(conn, sql, Int32(parameters.count), nil, values, lengths, formats, binaryResult ? 1 : 0)
        }
        guard let result else { throw PostgresError(sqlState: nil, message: Self.trimmed(PQerrorMessage(conn))) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK:
            return PostgresResult(result)
        default:
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            let message = PQresultErrorMessage(result).map { Self.trimmed($0) } ?? "statement failed"
            PQclear(result)
            // A statement that failed because the connection broke carries no server state.
            throw PostgresError(sqlState: isHealthy ? state : nil, message: message.isEmpty ? Self.trimmed(PQerrorMessage(conn)) : message)
        }
    }

    /// Runs several statements without parameters (a migration), in the simple query protocol.
    func executeScript(_ sql: String) throws(PostgresError) {
        guard let result = PQexec(conn, sql) else { throw PostgresError(sqlState: nil, message: Self.trimmed(PQerrorMessage(conn))) }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            throw PostgresError(sqlState: isHealthy ? state : nil, message: Self.trimmed(PQresultErrorMessage(result)))
        }
    }

    /// Runs `body` in a transaction: committed when it returns, rolled back when it throws
    /// (whatever it throws passes through: a conflict the caller detected, or a `PostgresError`).
    func transaction<T>(_ begin: String = "BEGIN", _ body: () throws -> T) throws -> T {
        try execute(begin)
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            if isHealthy { _ = try? execute("ROLLBACK") }
            throw error
        }
    }

    // MARK: - Notifications (LISTEN)

    /// Waits up to `timeoutMilliseconds` for the server to send something, then returns the
    /// notifications received (channel, payload). Throws when the connection is lost.
    func notifications(waitingUpTo timeoutMilliseconds: Int32) throws(PostgresError) -> [(channel: String, payload: String)] {
        let socket = PQsocket(conn)
        guard socket >= 0 else { throw PostgresError(sqlState: nil, message: "connection closed") }
        var fds = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        let ready = poll(&fds, 1, timeoutMilliseconds)
        if ready < 0 && errno != EINTR { throw PostgresError(sqlState: nil, message: "poll: \(String(cString: strerror(errno)))") }
        guard PQconsumeInput(conn) == 1, isHealthy else {
            throw PostgresError(sqlState: nil, message: Self.trimmed(PQerrorMessage(conn)))
        }
        var received: [(channel: String, payload: String)] = []
        while let notify = PQnotifies(conn) {
            received.append((String(cString: notify.pointee.relname), String(cString: notify.pointee.extra)))
            PQfreemem(notify)
        }
        return received
    }

    // MARK: - Helpers

    private static func withParameters<R>(_ parameters: [PostgresValue],
                                          _ body: (UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?) -> R) -> R {
        // Every value is copied into one allocation that outlives the call.
        var buffers: [UnsafeMutableRawBufferPointer] = []
        defer { buffers.forEach { $0.deallocate() } }
        var values: [UnsafePointer<CChar>?] = []
        var lengths: [Int32] = []
        var formats: [Int32] = []
        for parameter in parameters {
            switch parameter {
            case .text(nil):
                values.append(nil); lengths.append(0); formats.append(0)
            case .text(let string?):
                let utf8 = Array(string.utf8CString)
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: utf8.count, alignment: 1)
                utf8.withUnsafeBytes { buffer.copyMemory(from: $0) }
                buffers.append(buffer)
                values.append(UnsafePointer(buffer.baseAddress!.assumingMemoryBound(to: CChar.self)))
                lengths.append(0); formats.append(0)
            case .bytes(let bytes):
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
                bytes.withUnsafeBytes { if $0.count > 0 { buffer.copyMemory(from: $0) } }
                buffers.append(buffer)
                values.append(UnsafePointer(buffer.baseAddress!.assumingMemoryBound(to: CChar.self)))
                lengths.append(Int32(bytes.count)); formats.append(1)
            }
        }
        return values.withUnsafeBufferPointer { v in lengths.withUnsafeBufferPointer { l in formats.withUnsafeBufferPointer { f in
            body(v.baseAddress, l.baseAddress, f.baseAddress)
        }}}
    }

    private static func trimmed(_ message: UnsafePointer<CChar>?) -> String {
        guard let message else { return "" }
        // libpq's messages span lines ("…failed: Connection refused\n\tIs the server running…"): one line for logs and problems.
        return String(cString: message).split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.joined(separator: " ")
    }
}

/// The rows of one statement (`PGresult`), freed with it.
final class PostgresResult {
    private let result: OpaquePointer
    let rows: Int

    fileprivate init(_ result: OpaquePointer) {
        self.result = result
        rows = Int(PQntuples(result))
    }

    deinit { PQclear(result) }

    /// Rows changed by an INSERT/UPDATE/DELETE.
    var affectedRows: Int { Int(String(cString: PQcmdTuples(result))) ?? 0 }

    func isNull(_ row: Int, _ column: Int) -> Bool { PQgetisnull(result, Int32(row), Int32(column)) == 1 }

    func string(_ row: Int, _ column: Int) -> String? {
        isNull(row, column) ? nil : String(cString: PQgetvalue(result, Int32(row), Int32(column)))
    }

    func int(_ row: Int, _ column: Int) -> Int? { string(row, column).flatMap { Int($0) } }

    func double(_ row: Int, _ column: Int) -> Double? { string(row, column).flatMap { Double($0) } }

    /// A value fetched with `binaryResult`: its raw bytes.
    func bytes(_ row: Int, _ column: Int) -> [UInt8]? {
        guard !isNull(row, column), let value = PQgetvalue(result, Int32(row), Int32(column)) else { return nil }
        let count = Int(PQgetlength(result, Int32(row), Int32(column)))
        return Array(UnsafeRawBufferPointer(start: value, count: count))
    }
}

private extension Array where Element == String {
    /// A NULL-terminated array of C strings, valid inside `body`.
    func withCStrings<R>(_ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
        let copies = map { strdup($0) }
        defer { copies.forEach { free($0) } }
        let pointers: [UnsafePointer<CChar>?] = copies.map { UnsafePointer($0) } + [nil]
        return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
