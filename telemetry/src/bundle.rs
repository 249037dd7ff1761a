//! [`Bundle`]: the metrics of one component, registered as one collector.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Metric names and labels are constants of the code; a bad one is a bug
/// that the first test building the bundle shows.
const CONSTANT_DEFINITION: &str = "metric names and labels are valid constants";

type Refresh = Arc<dyn Fn() + Send + Sync>;

/// The metrics of one component: cheap to clone (the metrics are shared),
/// registered in a process's registry as one collector.
#[derive(Clone)]
pub struct Bundle {
    parts: Arc<[Box<dyn Collector>]>,
    refresh: Option<Refresh>,
}

impl Bundle {
    /// Adds every metric of the bundle to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.clone()))
    }

    /// Removes the bundle's metrics from `registry` (a stopped component).
    pub fn unregister(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.unregister(Box::new(self.clone()))
    }
}

impl Collector for Bundle {
    fn desc(&self) -> Vec<&Desc> {
        self.parts.iter().flat_map(|c| c.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if let Some(refresh) = &self.refresh {
            refresh();
        }
        self.parts.iter().flat_map(|c| c.collect()).collect()
    }
}

/// Makes the metrics of a [`Bundle`]. Every metric carries the builder's
/// constant labels (a storage node's `node`), so that several components
/// of one kind can share a registry.
#[derive(Default)]
pub struct BundleBuilder {
    const_labels: HashMap<String, String>,
    parts: Vec<Box<dyn Collector>>,
    refresh: Option<Refresh>,
}

impl BundleBuilder {
    pub fn new() -> BundleBuilder {
        BundleBuilder::default()
    }

    /// A label with a fixed value on every metric of the bundle.
    pub fn with_label(mut self, name: &str, value: &str) -> BundleBuilder {
        self.const_labels.insert(name.into(), value.into());
        self
    }

    fn opts(&self, name: &str, help: &str) -> Opts {
        Opts::new(name, help).const_labels(self.const_labels.clone())
    }

    fn add<C: Collector + Clone + 'static>(&mut self, metric: C) -> C {
        self.parts.push(Box::new(metric.clone()));
        metric
    }

    pub fn counter(&mut self, name: &str, help: &str) -> IntCounter {
        let c = IntCounter::with_opts(self.opts(name, help)).expect(CONSTANT_DEFINITION);
        self.add(c)
    }

    pub fn counter_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let c = IntCounterVec::new(self.opts(name, help), labels).expect(CONSTANT_DEFINITION);
        self.add(c)
    }

    pub fn gauge(&mut self, name: &str, help: &str) -> IntGauge {
        let g = IntGauge::with_opts(self.opts(name, help)).expect(CONSTANT_DEFINITION);
        self.add(g)
    }

    pub fn gauge_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        let g = IntGaugeVec::new(self.opts(name, help), labels).expect(CONSTANT_DEFINITION);
        self.add(g)
    }

    /// A histogram with the given bucket upper bounds.
    pub fn histogram_vec(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        let opts = HistogramOpts::from(self.opts(name, help)).buckets(buckets.to_vec());
        let h = HistogramVec::new(opts, labels).expect(CONSTANT_DEFINITION);
        self.add(h)
    }

    /// Runs `refresh` before every scrape, to set gauges from a sample
    /// (disk usage, a membership view) rather than on every change.
    pub fn on_collect(&mut self, refresh: impl Fn() + Send + Sync + 'static) {
        self.refresh = Some(Arc::new(refresh));
    }

    pub fn build(self) -> Bundle {
        Bundle {
            parts: self.parts.into(),
            refresh: self.refresh,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_of_two_nodes_share_a_registry_and_leave_it() {
        let registry = Registry::new();
        let bundle = |node: &str| {
            let mut b = BundleBuilder::new().with_label("node", node);
            let c = b.counter("flexdrive_test_total", "Test.");
            (c, b.build())
        };
        let (a, bundle_a) = bundle("a");
        let (b, bundle_b) = bundle("b");
        bundle_a.register(&registry).unwrap();
        bundle_b.register(&registry).unwrap();
        a.inc();
        b.inc_by(2);
        let text = crate::encode(&registry);
        assert!(
            text.contains("flexdrive_test_total{node=\"a\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("flexdrive_test_total{node=\"b\"} 2"),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE flexdrive_test_total").count(), 1);
        bundle_a.unregister(&registry).unwrap();
        assert!(!crate::encode(&registry).contains("node=\"a\""));
    }
}
