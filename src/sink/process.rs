//! The exporter's own process on `/metrics`: the standard Prometheus process metrics
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds`, `process_threads`), read at each scrape by
//! `metrics-process` (from `/proc/self` on Linux, as client_golang does), and
//! `skaffold_exporter_build_info{version,revision}`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use super::contract::Own;

/// The crate's version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the binary was built from (`build.rs`), or `unknown` outside a git
/// checkout.
pub const REVISION: &str = env!("SKAFFOLD_EXPORTER_REVISION");

/// Reads the process metrics at each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let m = metrics_process::collector::collect();
        if let Some(cpu) = m.cpu_seconds_total {
            let c = ConstCounter::new(cpu);
            let e = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                c.metric_type(),
            )?;
            c.encode(e)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                m.resident_memory_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                m.virtual_memory_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                m.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (0: unlimited).",
                m.max_fds,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                m.start_time_seconds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                m.threads,
            ),
        ];
        for (name, help, value) in gauges {
            let Some(v) = value else { continue };
            let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
            let e = encoder.encode_descriptor(name, help, None, g.metric_type())?;
            g.encode(e)?;
        }
        Ok(())
    }
}

/// Registers the process metrics and `skaffold_exporter_build_info` in `r`.
pub fn register(r: &mut Registry) {
    let info = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
    let names = Own::BuildInfo.spec().labels;
    info.get_or_create(&names.iter().copied().zip([VERSION, REVISION]).collect())
        .set(1);
    super::prometheus::register(r, Own::BuildInfo, info);
    r.register_collector(Box::new(ProcessCollector));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_and_build_info_are_exposed_and_plausible() {
        let mut r = Registry::default();
        register(&mut r);
        let text = crate::sink::exposition::encode_openmetrics(&r);
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
                .parse()
                .unwrap()
        };
        assert!(
            text.contains("# TYPE process_cpu_seconds counter"),
            "{text}"
        );
        assert!(value("process_cpu_seconds_total") >= 0.0);
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_open_fds") >= 3.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value("process_start_time_seconds");
        assert!(start <= now && start > now - 86_400.0, "{start} vs {now}");
        assert!(text.contains(&format!(
            "skaffold_exporter_build_info{{version=\"{VERSION}\",revision=\"{REVISION}\"}} 1"
        )));
        assert!(
            REVISION == "unknown" || REVISION.chars().all(|c| c.is_ascii_hexdigit()),
            "{REVISION}"
        );
    }
}
