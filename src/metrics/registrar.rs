//! Registration of metric families on one registry, one call per family.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Creates families and registers them on its registry.
///
/// Every definition is static, so a registration error (a bad name, a duplicate) is a
/// programming error that the unit tests catch: it panics rather than threading a `Result`
/// through start-up.
pub(super) struct Registrar<'a> {
    pub registry: &'a Registry,
}

fn must<T>(r: Result<T, prometheus::Error>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("invalid metric definition: {e}"),
    }
}

impl Registrar<'_> {
    fn add<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> C {
        must(self.registry.register(Box::new(c.clone())));
        c
    }

    /// A counter family with `labels`.
    pub fn counters(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(must(IntCounterVec::new(Opts::new(name, help), labels)))
    }

    /// A counter without labels.
    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(must(IntCounter::new(name, help)))
    }

    /// A gauge family with `labels`.
    pub fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(must(IntGaugeVec::new(Opts::new(name, help), labels)))
    }

    /// A gauge without labels.
    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(must(IntGauge::new(name, help)))
    }

    /// A histogram family with `labels` and `buckets`.
    pub fn histograms(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(must(HistogramVec::new(opts, labels)))
    }
}
