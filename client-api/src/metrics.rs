//! `/metrics` of the API in the Prometheus text format: transactions by
//! outcome, error answers by kind, transactions in flight, and the latency from
//! submit to outcome.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub kind: String,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub transactions: Family<OutcomeLabel, Counter>,
    pub errors: Family<ErrorLabel, Counter>,
    pub in_flight: Gauge,
    pub latency_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("shardspace_api");
        let transactions = Family::<OutcomeLabel, Counter>::default();
        registry.register("transactions", "Transactions answered, by outcome", transactions.clone());
        let errors = Family::<ErrorLabel, Counter>::default();
        registry.register("errors", "Error answers, by kind", errors.clone());
        let in_flight = Gauge::default();
        registry.register("in_flight", "Transactions waiting for their outcome", in_flight.clone());
        let latency_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register("latency_seconds", "From submit to outcome", latency_seconds.clone());
        Self { registry, transactions, errors, in_flight, latency_seconds }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            tracing::error!("the metrics do not encode");
        }
        text
    }
}
