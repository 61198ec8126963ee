import Metrics
import Prometheus

/// The server's metrics backend: swift-metrics into a Prometheus registry that `/metrics`
/// renders, with latency buckets sized for a scorer (50 µs to 1 s) rather than for web pages.
/// Shared by `scenescore serve` and the allocation probe, which must measure the same metrics path.
public enum MetricsBackend {
    /// Bootstraps the process-wide `MetricsSystem` (once per process) and returns the registry.
    public static func bootstrapPrometheus() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [.microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
                                                   .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
                                                   .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
                                                   .seconds(1)]
        factory.valueHistogramBuckets["scenescore_batch_requests"] = [1, 2, 4, 8, 16, 32, 64, 128]
        MetricsSystem.bootstrap(factory)
        return registry
    }

    /// `/metrics`' body: the registry in Prometheus text format.
    public static func renderer(_ registry: PrometheusCollectorRegistry) -> @Sendable () -> [UInt8] {
        return {
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            return buffer
        }
    }
}
