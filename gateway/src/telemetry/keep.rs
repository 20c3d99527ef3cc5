//! Which traces are exported: the rules `trace` applies to each request's spans.
//!
//! First the head sampler, as `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` name it
//! ([`Sampler`]; by default `parentbased_always_on`: a request follows its caller's decision, a
//! new trace is sampled). A trace it leaves out is never recorded.
//!
//! Of the sampled ones, with `--trace-reads` below 1: every span of a request that failed or
//! changed something, and the traces a ratio picks among the other reads. A request failed when
//! any of its spans has an error status or answered 4xx/5xx: a refused SCIM request (Entra's
//! "failed" provisioning step) keeps its whole trace whatever the ratio. A change (create,
//! replace, patch, delete, bulk) keeps it too: its audit record names the trace. So does a
//! request whose caller sent a sampled `traceparent`: the caller's trace stays whole. The ratio
//! looks at the trace id, as the standard `traceidratio` sampler does.
//!
//! Pure: no I/O, no state.

use opentelemetry::Value;
use opentelemetry::trace::{SpanContext, Status, TraceId};

/// Why the sampler variables were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SamplerError {
    #[error(
        "OTEL_TRACES_SAMPLER `{0}` is not supported; use always_on, always_off, traceidratio or their parentbased_ forms"
    )]
    Name(String),
    #[error("OTEL_TRACES_SAMPLER_ARG `{0}` is not a ratio between 0 and 1")]
    Ratio(String),
}

/// The head sampler: whether a trace is recorded at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampler {
    /// Whether a caller's decision (a valid `traceparent`) is followed.
    parent_based: bool,
    /// The decision for a new trace.
    root: Root,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    On,
    Off,
    /// Trace ids under this bound ([`threshold`]).
    Ratio(u64),
}

impl Default for Sampler {
    /// `parentbased_always_on`, the specification's default.
    fn default() -> Self {
        Self { parent_based: true, root: Root::On }
    }
}

impl Sampler {
    /// The sampler that `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (read through `var`)
    /// name; the default when unset. The ratio's argument defaults to 1.
    pub fn from_env(var: &dyn Fn(&str) -> Option<String>) -> Result<Self, SamplerError> {
        let Some(name) = var("OTEL_TRACES_SAMPLER").map(|n| n.trim().to_ascii_lowercase()).filter(|n| !n.is_empty())
        else {
            return Ok(Self::default());
        };
        let (parent_based, root) = match name.strip_prefix("parentbased_") {
            Some(root) => (true, root),
            None => (false, name.as_str()),
        };
        let root = match root {
            "always_on" => Root::On,
            "always_off" => Root::Off,
            "traceidratio" => {
                let ratio = match var("OTEL_TRACES_SAMPLER_ARG").filter(|a| !a.trim().is_empty()) {
                    None => 1.0,
                    Some(arg) => arg
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|r| (0.0..=1.0).contains(r))
                        .ok_or(SamplerError::Ratio(arg))?,
                };
                Root::Ratio(threshold(ratio))
            }
            _ => return Err(SamplerError::Name(name)),
        };
        Ok(Self { parent_based, root })
    }

    /// Whether the trace `id`, under `caller` (invalid when the request has none), is sampled.
    pub fn sample(&self, caller: &SpanContext, id: TraceId) -> bool {
        if self.parent_based && caller.is_valid() {
            return caller.is_sampled();
        }
        match self.root {
            Root::On => true,
            Root::Off => false,
            Root::Ratio(bound) => picked(bound, id),
        }
    }
}

/// The ratio `reads` (0 to 1) as a bound on trace ids: 2^63 scaled, as the SDK's ratio sampler,
/// exact at 0 and at 1.
pub(super) fn threshold(reads: f64) -> u64 {
    (reads.clamp(0.0, 1.0) * (1u64 << 63) as f64) as u64
}

/// Whether the ratio behind `threshold` picks the trace `id`: its low 64 bits, as the SDK's ratio
/// sampler reads them.
pub(super) fn picked(threshold: u64, id: TraceId) -> bool {
    let low = u128::from_be_bytes(id.to_bytes()) as u64;
    (low >> 1) < threshold
}

/// The `scim.operation`s (`server::observe`) that may change what the app or the store holds.
const CHANGES: [&str; 5] = ["create", "replace", "patch", "delete", "bulk"];

/// Whether the `scim.operation` `op` is a change, whose trace is always kept.
pub fn is_change(op: &str) -> bool {
    CHANGES.contains(&op)
}

/// Whether a span with `status` and `attributes` failed: an error status, or an HTTP answer of
/// 400 or above.
pub(super) fn failure(status: &Status, attributes: &[opentelemetry::KeyValue]) -> bool {
    matches!(status, Status::Error { .. })
        || attributes
            .iter()
            .any(|kv| kv.key.as_str() == "http.response.status_code" && matches!(kv.value, Value::I64(s) if s >= 400))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::KeyValue;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceState};

    use super::*;

    /// A trace id whose low bits put it at `at` (0 to 1) of the ratio's range.
    fn trace(at: f64) -> TraceId {
        let low = ((at * (1u64 << 63) as f64) as u64) << 1;
        let mut bytes = [0u8; 16];
        bytes[8..].copy_from_slice(&low.to_be_bytes());
        TraceId::from_bytes(bytes)
    }

    fn sampler(vars: &[(&str, &str)]) -> Result<Sampler, SamplerError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Sampler::from_env(&|k| vars.get(k).cloned())
    }

    fn caller(sampled: bool) -> SpanContext {
        let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        SpanContext::new(trace(0.9), SpanId::from(7), flags, true, TraceState::NONE)
    }

    #[test]
    fn the_ratios_ends_are_exact() {
        for at in [0.0, 0.3, 0.999_999] {
            assert!(!picked(threshold(0.0), trace(at)));
            assert!(picked(threshold(1.0), trace(at)));
        }
        assert!(picked(threshold(0.25), trace(0.2)) && !picked(threshold(0.25), trace(0.3)));
    }

    #[test]
    fn the_sampler_is_read_as_the_specification_names_it() {
        let none = SpanContext::empty_context();
        let default = sampler(&[]).unwrap();
        assert_eq!(default, Sampler::default());
        assert!(default.sample(&none, trace(0.5)), "a new trace is sampled");
        assert!(!default.sample(&caller(false), trace(0.5)), "a caller's decision is followed");

        let ratio =
            sampler(&[("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "0.25")])
                .unwrap();
        assert!(ratio.sample(&none, trace(0.2)) && !ratio.sample(&none, trace(0.3)));
        assert!(ratio.sample(&caller(true), trace(0.9)), "the caller's, whatever the id");

        let own = sampler(&[("OTEL_TRACES_SAMPLER", "TraceIdRatio"), ("OTEL_TRACES_SAMPLER_ARG", "0.25")]).unwrap();
        assert!(!own.sample(&caller(true), trace(0.9)), "not parent-based: the id decides");
        let off = sampler(&[("OTEL_TRACES_SAMPLER", "always_off")]).unwrap();
        assert!(!off.sample(&none, trace(0.0)));
        let all = sampler(&[("OTEL_TRACES_SAMPLER", "traceidratio")]).unwrap();
        assert!(all.sample(&none, trace(0.999)), "the ratio defaults to 1");

        assert_eq!(
            sampler(&[("OTEL_TRACES_SAMPLER", "jaeger_remote")]),
            Err(SamplerError::Name("jaeger_remote".into()))
        );
        for bad in ["1.5", "-0.1", "half"] {
            let vars = [("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", bad)];
            assert_eq!(sampler(&vars), Err(SamplerError::Ratio(bad.into())));
        }
    }

    #[test]
    fn a_failure_is_an_error_status_or_an_answer_of_400_and_above() {
        let status = |s: i64| [KeyValue::new("http.response.status_code", s)];
        assert!(!failure(&Status::Unset, &status(201)));
        assert!(failure(&Status::Unset, &status(409)));
        assert!(failure(&Status::error(""), &[]));
        assert!(is_change("patch") && !is_change("list"));
    }
}
