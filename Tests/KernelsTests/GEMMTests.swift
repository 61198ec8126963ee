import Testing
@testable import Kernels

@Test func placeholder() { #expect(Activation.relu.apply(-1) == 0) }
