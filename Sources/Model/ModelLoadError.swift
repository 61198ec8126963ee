/// Why a model file was rejected: the file, the tensor when one is to blame, and the problem.
public struct ModelLoadError: Error, CustomStringConvertible, Equatable, Sendable {
    public let file: String
    public let tensor: String?
    public let problem: String

    public init(file: String, tensor: String? = nil, _ problem: String) {
        self.file = file
        self.tensor = tensor
        self.problem = problem
    }

    public var description: String {
        if let tensor { return "\(file): tensor '\(tensor)': \(problem)" }
        return "\(file): \(problem)"
    }
}
