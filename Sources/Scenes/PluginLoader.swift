import Model
import NIOConcurrencyHelpers
internal import ScenePluginABI
#if canImport(Glibc)
internal import Glibc
#elseif canImport(Darwin)
internal import Darwin
#endif

// The C side of ScenePlugin: finding and opening the library, checking the plugin's declaration
// against the ABI and the backbone, create(), and the per-thread scratch the request path uses.
// Every C call of the loader is in this file.

typealias CreateFunction = @convention(c) (
    UnsafePointer<CChar>?, Int, UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutablePointer<CChar>?, Int
) -> Int32
typealias DestroyFunction = @convention(c) (UnsafeMutableRawPointer?) -> Void
typealias TransformFunction = @convention(c) (
    UnsafeRawPointer?, UnsafePointer<scenescore_batch>?, UnsafeMutablePointer<scenescore_canonical_out>?,
    UnsafeMutablePointer<CChar>?, Int
) -> Int32
typealias PostprocessFunction = @convention(c) (
    UnsafeRawPointer?, UInt32, UInt32, UnsafePointer<UnsafePointer<CChar>?>?, UnsafeMutablePointer<Float>?,
    UnsafeMutablePointer<CChar>?, Int
) -> Int32

/// One dlopen() handle; dlclose() when released. ScenePlugin releases it after destroy().
final class PluginLibrary {
    let handle: UnsafeMutableRawPointer
    let path: String
    /// False for a library opened RTLD_NODELETE (see `PluginLoader.registersWithSwiftRuntime`).
    let unloadable: Bool

    init(handle: UnsafeMutableRawPointer, path: String, unloadable: Bool) {
        self.handle = handle
        self.path = path
        self.unloadable = unloadable
    }

    deinit {
        PluginLoader.loaded.withLockedValue { files in
            dlclose(handle)
            files[path]?.handles -= 1
            if let file = files[path], file.handles == 0, !file.pinned { files[path] = nil }
        }
    }
}

/// A library file the loader has open: which file it was (device and inode when it was opened),
/// how many handles are open, and whether it can never be unmapped.
struct LoadedFile {
    var device: UInt64
    var inode: UInt64
    var handles: Int
    var pinned: Bool
}

/// What a plugin declares, read once and checked (the hot path never reads the descriptor).
struct PluginDeclaration {
    let scene: String
    let summary: String
    let raw: PluginSchema
    let canonical: PluginSchema
    let create: CreateFunction
    let destroy: DestroyFunction
    let transform: TransformFunction
    let postprocess: PostprocessFunction?
}

enum PluginLoader {
    /// Bounds on what a declaration may contain.
    static let maxSectionCount = 4096
    static let maxFieldName = 255
    static let maxDescription = 1024

    /// `<directory>/<name>.so` with symlinks resolved, refused unless `name` is 1…64 of
    /// [a-z0-9_-] and the resolved file is a regular file inside the resolved directory.
    static func resolve(name: String, directory: String) throws(PluginError) -> String {
        guard HeadSpec.isValidSceneName(name) else {
            throw PluginError(.forbidden, "plugin name '\(String(name.prefix(80)))' must be 1…64 of [a-z0-9_-]")
        }
        guard let realDirectory = realPath(directory) else {
            throw PluginError(.notFound, "plugin '\(name)': the plugin directory '\(directory)' does not exist")
        }
        let file = realDirectory + "/" + name + ".so"
        var info = stat()
        guard lstat(file, &info) == 0 else {
            let reason = errno
            if reason == ENOENT { throw PluginError(.notFound, "plugin '\(name)': no \(name).so in \(realDirectory)") }
            throw PluginError(.invalid, "plugin '\(name)': cannot read \(name).so: \(String(cString: strerror(reason)))")
        }
        guard let resolved = realPath(file) else {
            throw PluginError(.notFound, "plugin '\(name)': \(name).so is a broken symbolic link")
        }
        let prefix = realDirectory == "/" ? "/" : realDirectory + "/"
        guard resolved.utf8.starts(with: prefix.utf8) else {
            throw PluginError(.forbidden, "plugin '\(name)': \(name).so resolves to \(resolved), outside the plugin directory \(realDirectory)")
        }
        guard stat(resolved, &info) == 0, info.st_mode & 0o170000 == 0o100000 else {
            throw PluginError(.invalid, "plugin '\(name)': \(name).so is not a regular file")
        }
        return resolved
    }

    /// The library files open through the loader, by resolved path. dlopen() returns the
    /// library already loaded from the same path even when the file has been replaced since, so
    /// the loader refuses a replaced file while its previous build is still mapped instead of
    /// silently serving the old code.
    static let loaded = NIOLockedValueBox<[String: LoadedFile]>([:])

    /// dlopen()s `path` (RTLD_NOW | RTLD_LOCAL, plus RTLD_NODELETE for a library that registers
    /// with the Swift runtime) and calls its entry symbol.
    static func open(path: String, name: String) throws(PluginError) -> (PluginLibrary, UnsafePointer<scenescore_plugin>) {
        let pinned = registersWithSwiftRuntime(path: path)
        var info = stat()
        guard stat(path, &info) == 0 else { throw PluginError(.notFound, "plugin '\(name)': \(name).so disappeared") }
        let device = UInt64(info.st_dev), inode = UInt64(info.st_ino)
        let opened: Result<UnsafeMutableRawPointer, PluginError> = loaded.withLockedValue { files in
            if let file = files[path], file.device != device || file.inode != inode {
                return .failure(PluginError(.invalid, "plugin '\(name)': \(name).so was replaced while its previous build is still "
                                            + "loaded\(file.pinned ? " (a Swift library stays loaded for the life of the process)" : ""); "
                                            + "install the new build under a new name"))
            }
            _ = dlerror()
            guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | (pinned ? RTLD_NODELETE : 0)) else {
                let reason = dlerror().map { String(cString: $0) } ?? "unknown error"
                return .failure(PluginError(.invalid, "plugin '\(name)': cannot load \(name).so: \(reason)"))
            }
            files[path, default: LoadedFile(device: device, inode: inode, handles: 0, pinned: pinned)].handles += 1
            return .success(handle)
        }
        let handle: UnsafeMutableRawPointer
        switch opened {
        case .success(let h): handle = h
        case .failure(let error): throw error
        }
        // From here on, releasing `library` closes the handle and updates `loaded`.
        let library = PluginLibrary(handle: handle, path: path, unloadable: !pinned)
        guard let symbol = dlsym(handle, SCENESCORE_PLUGIN_ENTRY_SYMBOL) else {
            throw PluginError(.invalid, "plugin '\(name)': \(name).so does not export \(SCENESCORE_PLUGIN_ENTRY_SYMBOL)")
        }
        let entry = unsafeBitCast(symbol, to: scenescore_plugin_entry_fn.self)
        guard let descriptor = entry() else {
            throw PluginError(.invalid, "plugin '\(name)': \(SCENESCORE_PLUGIN_ENTRY_SYMBOL)() returned no plugin")
        }
        return (library, descriptor)
    }

    /// Whether the ELF file at `path` carries Swift runtime metadata sections (`swift5_*`).
    /// Every library swiftc links, unless with -nostartfiles, registers those sections with the
    /// Swift runtime when it is loaded (swiftrt.o's constructor), and the runtime keeps walking
    /// them for the life of the process; it has no way to unregister an image. Such a library
    /// must never be unmapped, so it is opened RTLD_NODELETE: a plugin written in Swift (or a C
    /// plugin linked by swiftc with the start files) stays mapped after its last instance; a
    /// plain C or Rust library does not. Anything that is not a readable little-endian ELF64
    /// file counts as Swift (pinned), the safe side; dlopen() then judges it.
    static func registersWithSwiftRuntime(path: String) -> Bool {
        let fd = openForReading(path)
        guard fd >= 0 else { return true }
        defer { closeFile(fd) }
        func read(_ count: Int, at offset: UInt64) -> [UInt8]? {
            guard count > 0, count <= 64 << 20, offset <= UInt64(Int64.max) else { return nil }
            var bytes = [UInt8](repeating: 0, count: count)
            let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
            return got == count ? bytes : nil
        }
        func integer(_ bytes: [UInt8], _ offset: Int, _ width: Int) -> UInt64 {
            (0..<width).reduce(0) { $0 | UInt64(bytes[offset + $1]) << (8 * $1) }
        }
        // Elf64_Ehdr: e_ident (class 2 = 64-bit, data 1 = little-endian), e_shoff at 0x28,
        // e_shentsize, e_shnum, e_shstrndx at 0x3A, 0x3C, 0x3E. Elf64_Shdr: sh_name at 0,
        // sh_offset at 0x18, sh_size at 0x20.
        guard let header = read(64, at: 0), header[0..<4].elementsEqual([0x7F, 0x45, 0x4C, 0x46]),
              header[4] == 2, header[5] == 1 else { return true }
        let sectionsAt = integer(header, 0x28, 8), entrySize = Int(integer(header, 0x3A, 2))
        let count = Int(integer(header, 0x3C, 2)), namesIndex = Int(integer(header, 0x3E, 2))
        guard entrySize >= 0x40, count > 0, namesIndex < count,
              let table = read(count * entrySize, at: sectionsAt),
              let names = read(Int(clamping: integer(table, namesIndex * entrySize + 0x20, 8)),
                               at: integer(table, namesIndex * entrySize + 0x18, 8))
        else { return true }
        let prefix = Array("swift5_".utf8)
        for i in 0..<count {
            let start = Int(integer(table, i * entrySize, 4))
            guard start < names.count else { return true }
            if names[start...].starts(with: prefix) { return true }
        }
        return false
    }

    /// Reads and checks the plugin's declaration: ABI version, functions, scene name, raw
    /// schema (names required), canonical counts equal to the backbone's (names optional).
    static func declaration(of descriptor: UnsafePointer<scenescore_plugin>, name: String, backbone: BackboneSpec) throws(PluginError) -> PluginDeclaration {
        let d = descriptor.pointee
        func bad(_ reason: String) -> PluginError { PluginError(.invalid, "plugin '\(name)': \(reason)") }
        guard d.abi_version == SCENESCORE_PLUGIN_ABI_VERSION else {
            throw bad("built for plugin ABI version \(d.abi_version), this server speaks version \(SCENESCORE_PLUGIN_ABI_VERSION)")
        }
        guard let create = d.create else { throw bad("declares no create() function") }
        guard let destroy = d.destroy else { throw bad("declares no destroy() function") }
        guard let transform = d.transform else { throw bad("declares no transform() function") }
        guard let scene = cString(d.scene, max: 64), HeadSpec.isValidSceneName(scene) else {
            throw bad("declares scene \(cString(d.scene, max: 80).map { "'\($0)'" } ?? "(none)"), which is not 1…64 of [a-z0-9_-]")
        }
        var summary = ""
        if d.description != nil {
            guard let text = cString(d.description, max: maxDescription) else { throw bad("description is longer than \(maxDescription) bytes") }
            summary = text
        }
        let raw = try schema(d.raw, kind: "raw", namesRequired: true, plugin: name)
        let expected = [("context ids", backbone.contextFields.count, d.canonical.context_ids.count),
                        ("context dense values", backbone.contextDense, d.canonical.context_dense.count),
                        ("item ids", backbone.itemFields.count, d.canonical.item_ids.count),
                        ("item dense values", backbone.itemDense, d.canonical.item_dense.count)]
        for (what, backboneCount, pluginCount) in expected where Int(pluginCount) != backboneCount {
            throw bad("its canonical schema has \(pluginCount) \(what), the backbone expects \(backboneCount)")
        }
        let canonical = try schema(d.canonical, kind: "canonical", namesRequired: false, plugin: name)
        return PluginDeclaration(scene: scene, summary: summary, raw: raw, canonical: canonical, create: create,
                                 destroy: destroy, transform: transform, postprocess: d.postprocess)
    }

    /// Calls create() with the config; the plugin's message on failure.
    static func create(_ declaration: PluginDeclaration, name: String, configJSON: String) throws(PluginError) -> UnsafeMutableRawPointer? {
        var instance: UnsafeMutableRawPointer? = nil
        var error = [CChar](repeating: 0, count: PluginScratch.errorCapacity)
        var json = configJSON
        let status = json.withUTF8 { bytes in
            error.withUnsafeMutableBufferPointer { e in
                declaration.create(UnsafeRawPointer(bytes.baseAddress)?.assumingMemoryBound(to: CChar.self), bytes.count,
                                   &instance, e.baseAddress, e.count)
            }
        }
        guard status == 0 else {
            let text = error.withUnsafeBufferPointer { message($0.baseAddress!, $0.count) }
            throw PluginError(.invalid, "plugin '\(name)': create() failed: \(text)")
        }
        return instance
    }

    /// A plugin's error message: at most `capacity` bytes up to the first NUL, invalid UTF-8
    /// repaired and control characters blanked (it ends up in logs and problem details).
    static func message(_ buffer: UnsafePointer<CChar>, _ capacity: Int) -> String {
        let length = strnlen(buffer, capacity)
        let text = String(decoding: UnsafeRawBufferPointer(start: buffer, count: length), as: UTF8.self)
        let clean = String(String.UnicodeScalarView(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : $0 }))
        return clean.isEmpty ? "(no message)" : clean
    }

    /// A NUL-terminated string of at most `max` bytes, or nil (NULL or longer).
    static func cString(_ pointer: UnsafePointer<CChar>?, max: Int) -> String? {
        guard let pointer else { return nil }
        let length = strnlen(pointer, max + 1)
        guard length <= max else { return nil }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self)
    }

    static func schema(_ s: scenescore_schema, kind: String, namesRequired: Bool, plugin: String) throws(PluginError) -> PluginSchema {
        func section(_ section: scenescore_section, _ label: String) throws(PluginError) -> [String] {
            func bad(_ reason: String) -> PluginError { PluginError(.invalid, "plugin '\(plugin)': \(kind) \(label) \(reason)") }
            let count = Int(section.count)
            guard count <= maxSectionCount else { throw bad("declares \(count) values (at most \(maxSectionCount))") }
            var names: [String] = []
            names.reserveCapacity(count)
            for i in 0..<count {
                let pointer = section.names?[i]
                if let pointer, let name = cString(pointer, max: maxFieldName), !name.isEmpty {
                    names.append(name)
                } else if namesRequired {
                    throw bad(pointer == nil ? "name \(i) is missing" : "name \(i) must be 1…\(maxFieldName) bytes")
                } else {
                    names.append("\(label)[\(i)]")
                }
            }
            return names
        }
        return PluginSchema(contextIDs: try section(s.context_ids, "context_ids"),
                            contextDense: try section(s.context_dense, "context_dense"),
                            itemIDs: try section(s.item_ids, "item_ids"),
                            itemDense: try section(s.item_dense, "item_dense"))
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

/// Per-thread scratch for the request path: the error buffer handed to the plugin and room to
/// copy misaligned raw sections into (the ABI promises plugins naturally aligned arrays; wire v1
/// bodies may put a section at any offset). Grown on demand and kept, so a thread allocates
/// only when it sees a larger request than before; freed when the thread exits.
struct PluginScratch {
    static let errorCapacity = 1024

    private struct State {
        var errors: UnsafeMutablePointer<CChar>
        var empty: UnsafeMutableRawPointer
        var data: UnsafeMutableRawPointer
        var capacity: Int
    }

    private let state: UnsafeMutablePointer<State>

    /// This thread's scratch.
    static func current() -> PluginScratch {
        if let existing = pthread_getspecific(scratchKey) {
            return PluginScratch(state: existing.assumingMemoryBound(to: State.self))
        }
        let state = UnsafeMutablePointer<State>.allocate(capacity: 1)
        state.initialize(to: State(errors: .allocate(capacity: errorCapacity),
                                   empty: .allocate(byteCount: 64, alignment: 64),
                                   data: .allocate(byteCount: 4096, alignment: 64), capacity: 4096))
        state.pointee.empty.initializeMemory(as: UInt8.self, repeating: 0, count: 64)
        pthread_setspecific(scratchKey, state)
        return PluginScratch(state: state)
    }

    /// The pthread key's destructor: frees a thread's scratch when it exits.
    static func release(_ pointer: UnsafeMutableRawPointer?) {
        guard let state = pointer?.assumingMemoryBound(to: State.self) else { return }
        state.pointee.errors.deallocate()
        state.pointee.empty.deallocate()
        state.pointee.data.deallocate()
        state.deinitialize(count: 1)
        state.deallocate()
    }

    var errorBuffer: UnsafeMutablePointer<CChar> { state.pointee.errors }
    /// A valid, aligned pointer for an array of zero values.
    var emptyFloats: UnsafeMutablePointer<Float> { state.pointee.empty.assumingMemoryBound(to: Float.self) }

    /// The request's four sections as naturally aligned arrays in host byte order: in place when
    /// they already are, else copied (and on a big-endian host byte-swapped) into the scratch.
    func prepare(_ raw: ScoringInput) -> (contextIDs: UnsafePointer<UInt32>, contextDense: UnsafePointer<Float>,
                                          itemIDs: UnsafePointer<UInt32>, itemDense: UnsafePointer<Float>) {
        func mustCopy(_ s: UnsafeRawBufferPointer) -> Bool {
            guard let base = s.baseAddress, s.count > 0 else { return false }
            #if _endian(little)
            return Int(bitPattern: base) & 3 != 0
            #else
            return true
            #endif
        }
        func padded(_ s: UnsafeRawBufferPointer) -> Int { mustCopy(s) ? (s.count + 63) & ~63 : 0 }
        let needed = padded(raw.contextIDs) + padded(raw.contextDense) + padded(raw.itemIDs) + padded(raw.itemDense)
        if needed > state.pointee.capacity {
            let grown = max(needed, 2 * state.pointee.capacity)
            state.pointee.data.deallocate()
            state.pointee.data = .allocate(byteCount: grown, alignment: 64)
            state.pointee.capacity = grown
        }
        var offset = 0
        func place(_ s: UnsafeRawBufferPointer, _ offset: inout Int) -> UnsafeRawPointer {
            guard let base = s.baseAddress, s.count > 0 else { return UnsafeRawPointer(state.pointee.empty) }
            guard mustCopy(s) else { return base }
            let destination = state.pointee.data + offset
            offset += padded(s)
            #if _endian(little)
            destination.copyMemory(from: base, byteCount: s.count & ~3)
            #else
            for i in 0..<(s.count / 4) {
                destination.storeBytes(of: UInt32(littleEndian: s.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)),
                                       toByteOffset: 4 * i, as: UInt32.self)
            }
            #endif
            return UnsafeRawPointer(destination)
        }
        let contextIDs = place(raw.contextIDs, &offset), contextDense = place(raw.contextDense, &offset)
        let itemIDs = place(raw.itemIDs, &offset), itemDense = place(raw.itemDense, &offset)
        return (contextIDs.assumingMemoryBound(to: UInt32.self), contextDense.assumingMemoryBound(to: Float.self),
                itemIDs.assumingMemoryBound(to: UInt32.self), itemDense.assumingMemoryBound(to: Float.self))
    }
}

// File-scope wrappers: inside PluginLoader, `open` names its own method.
private func openForReading(_ path: String) -> Int32 { open(path, O_RDONLY | O_CLOEXEC) }
private func closeFile(_ fd: Int32) { close(fd) }

/// The key of each thread's PluginScratch (created once, never deleted).
private let scratchKey: pthread_key_t = {
    var key = pthread_key_t()
    let status = pthread_key_create(&key) { PluginScratch.release($0) }
    precondition(status == 0, "pthread_key_create failed: \(status)")
    return key
}()
