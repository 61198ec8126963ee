import Foundation

/// A private PostgreSQL cluster for the tests: Debian's server binaries, `initdb` into a
/// temporary directory, listening on loopback only on a free port, trust authentication; stopped
/// and deleted when the test process exits. Each test gets a database of its own (`database()`).
/// As root (CI containers) the server runs as the `postgres` user, since it refuses root.
enum PostgresCluster {
    static let binaries: String? = {
        let base = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []).compactMap(Int.init).sorted()
        return versions.last.map { "\(base)/\($0)/bin" }.flatMap { FileManager.default.isExecutableFile(atPath: $0 + "/initdb") ? $0 : nil }
    }()

    static var available: Bool { binaries != nil }

    struct Running {
        let directory: String
        let port: Int
        var url: String { "postgres://scenescore@127.0.0.1:\(port)/postgres" }
    }

    /// Started on first use.
    static let shared: Result<Running, Error> = Result { try start() }

    /// A fresh, empty database in the shared cluster; its URL.
    static func database() throws -> String {
        let cluster = try shared.get()
        let name = "t_" + UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: "")
        try run(binaries! + "/psql", ["-q", "-h", "127.0.0.1", "-p", "\(cluster.port)", "-U", "scenescore", "-d", "postgres",
                                      "-c", "CREATE DATABASE \(name)"])
        return "postgres://scenescore@127.0.0.1:\(cluster.port)/\(name)"
    }

    private static func start() throws -> Running {
        guard let bin = binaries else { throw ClusterError("PostgreSQL server binaries not found under /usr/lib/postgresql") }
        let directory = NSTemporaryDirectory() + "scenescore-pg-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let asRoot = getuid() == 0
        if asRoot { try run("/bin/chown", ["postgres", directory]) }
        func server(_ tool: String, _ arguments: [String]) throws {
            if asRoot { try run("/sbin/runuser", ["-u", "postgres", "--", bin + "/" + tool] + arguments) }
            else { try run(bin + "/" + tool, arguments) }
        }
        try server("initdb", ["-D", directory + "/data", "--auth=trust", "-U", "scenescore", "--no-sync"])
        let port = freePort()
        try server("pg_ctl", ["-D", directory + "/data", "-l", directory + "/log", "-w", "-o",
                              "-p \(port) -c listen_addresses=127.0.0.1 -c unix_socket_directories=\(directory) -c fsync=off", "start"])
        stopAtExit = { try? server("pg_ctl", ["-D", directory + "/data", "-m", "immediate", "-w", "stop"]); try? FileManager.default.removeItem(atPath: directory) }
        atexit { PostgresCluster.stopAtExit?() }
        return Running(directory: directory, port: port)
    }

    nonisolated(unsafe) private static var stopAtExit: (() -> Void)?

    struct ClusterError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Runs a tool to its end (posix_spawn + waitpid: Foundation's `Process` can miss the exit of
    /// a child whose own child, the server `pg_ctl start` leaves running, lives on). Its output
    /// goes to a file, not a pipe, which that server would inherit and hold open.
    private static func run(_ tool: String, _ arguments: [String]) throws {
        let log = NSTemporaryDirectory() + "scenescore-pg-tool-" + UUID().uuidString
        defer { unlink(log) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = ([tool] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, tool, &actions, nil, argv, environ)
        guard spawned == 0 else { throw ClusterError("\(tool): cannot start (\(String(cString: strerror(spawned))))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exited = status & 0x7f == 0, code = (status >> 8) & 0xff
        guard exited && code == 0 else {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw ClusterError("\(tool) \(arguments.joined(separator: " ")) failed (status \(status)): \(text.suffix(500))")
        }
    }

    /// A port nothing listens on right now (bind to 0, read it back, close).
    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
