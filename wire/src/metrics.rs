//! Metrics for hot paths, which prometheus-client encodes: a counter and a
//! latency histogram, both sharded by thread and lock-free.
//!
//! prometheus-client's own `Histogram` takes a write lock per observation,
//! and every metric it keeps is one cache line that all threads write: on
//! the registry's heartbeat path (two threads answering ~80,000 requests a
//! second) those contended lines cost 12% of its throughput. Here each
//! thread adds to a shard of its own (relaxed atomic adds, no lock), and a
//! scrape sums the shards.
//!
//! Also what both services share of their metrics: the process-wide set
//! installed when they serve HTTP ([`Installed`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use tokio::time::Instant;

/// Shards of a metric: more than the threads that write at once.
const SHARDS: usize = 8;

/// Latency bounds, in ns: 25 µs to about 0.8 s, doubling.
const BOUNDS_NS: [u64; 16] = {
    let mut bounds = [0; 16];
    let mut i = 0;
    while i < 16 {
        bounds[i] = 25_000 << i;
        i += 1;
    }
    bounds
};

/// The shard of the calling thread, drawn once per thread.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|shard| *shard)
}

/// One cache line (two, for the prefetcher's pairs) per shard.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// A counter; clones count together.
#[derive(Debug, Clone, Default)]
pub struct Count(Arc<[Padded<AtomicU64>; SHARDS]>);

impl Count {
    pub fn inc(&self) {
        self.inc_by(1);
    }

    pub fn inc_by(&self, by: u64) {
        self.0[shard()].0.fetch_add(by, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.iter().map(|shard| shard.0.load(Ordering::Relaxed)).sum()
    }
}

impl TypedMetric for Count {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for Count {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// A histogram of durations, from 25 µs to 0.8 s in 16 doubling buckets;
/// clones count together.
#[derive(Debug, Clone, Default)]
pub struct Latency(Arc<[Padded<LatencyShard>; SHARDS]>);

#[derive(Debug, Default)]
struct LatencyShard {
    /// Observations per bucket, the last one past every bound.
    buckets: [AtomicU64; BOUNDS_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl Latency {
    pub fn observe(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NS.partition_point(|&bound| bound < ns);
        let shard = &self.0[shard()].0;
        shard.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        shard.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Observes the time since `started`, when there is one.
    pub fn since(&self, started: Option<Instant>) {
        if let Some(started) = started {
            self.observe(started.elapsed());
        }
    }
}

impl TypedMetric for Latency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets: Vec<(f64, u64)> = BOUNDS_NS.iter().map(|&ns| (ns as f64 / 1e9, 0)).collect();
        buckets.push((f64::MAX, 0));
        let mut sum_ns = 0u64;
        for shard in self.0.iter() {
            for (bucket, count) in buckets.iter_mut().zip(&shard.0.buckets) {
                bucket.1 += count.load(Ordering::Relaxed);
            }
            sum_ns = sum_ns.wrapping_add(shard.0.sum_ns.load(Ordering::Relaxed));
        }
        let count = buckets.iter().map(|bucket| bucket.1).sum();
        encoder.encode_histogram::<NoLabelSet>(sum_ns as f64 / 1e9, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A service's metrics, one set per process, installed when it serves
/// HTTP: until then, nothing counts, and the clock is not even read.
#[derive(Debug)]
pub struct Installed<M>(OnceLock<M>);

impl<M> Installed<M> {
    pub const fn new() -> Installed<M> {
        Installed(OnceLock::new())
    }

    /// Installs the metrics, once; later calls get the same ones.
    pub fn install(&self, make: impl FnOnce() -> M) -> &M {
        self.0.get_or_init(make)
    }

    pub fn get(&'static self) -> Option<&'static M> {
        self.0.get()
    }

    /// Counts with `count` when installed.
    pub fn count(&'static self, count: impl FnOnce(&'static M)) {
        if let Some(metrics) = self.get() {
            count(metrics);
        }
    }

    /// Now, when installed: when something timed began.
    pub fn started(&'static self) -> Option<Instant> {
        self.get().map(|_| Instant::now())
    }
}

impl<M> Default for Installed<M> {
    fn default() -> Self {
        Installed::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn counts_and_latencies_from_many_threads_add_up_in_the_exposition() {
        let (count, latency) = (Count::default(), Latency::default());
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for i in 0..1000u64 {
                        count.inc();
                        latency.observe(Duration::from_micros(10 + i % 2 * 90));
                    }
                });
            }
        });
        assert_eq!(count.get(), 4000);
        let mut registry = Registry::default();
        registry.register("c", "C", count);
        registry.register("l_seconds", "L", latency);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let families = crate::exposition::parse(&text).unwrap();
        assert_eq!(families[0].sum("c_total", &[]), 4000.0);
        let latency = &families[1];
        assert_eq!(latency.sum("l_seconds_count", &[]), 4000.0);
        assert!((latency.sum("l_seconds_sum", &[]) - 2000.0 * 100e-6 - 2000.0 * 10e-6).abs() < 1e-9);
        // 10 µs fall under the first bound (25 µs), 100 µs under the third (100 µs).
        assert_eq!(latency.sum("l_seconds_bucket", &[("le", "0.000025")]), 2000.0);
        assert_eq!(latency.sum("l_seconds_bucket", &[("le", "0.0001")]), 4000.0);
        assert_eq!(latency.sum("l_seconds_bucket", &[("le", "+Inf")]), 4000.0);
    }
}
