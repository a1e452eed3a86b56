//! Exposition formats. `prometheus-client` writes OpenMetrics text; this module also
//! renders the classic Prometheus text format 0.0.4 from it, for scrapers and tools
//! that do not read OpenMetrics (`promtool check metrics`, older agents).

use prometheus_client::registry::Registry;

/// Content-Type of OpenMetrics text 1.0.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content-Type of the classic Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Encodes the registry as OpenMetrics text (ends with `# EOF`).
pub fn encode_openmetrics(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("writing to a String cannot fail");
    out
}

/// Converts OpenMetrics text to Prometheus text 0.0.4: counters are declared under
/// their `_total` name, `_created` samples, `# UNIT` lines, exemplars and `# EOF` go.
pub fn openmetrics_to_prometheus(om: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, "counter")) = rest.split_once(' ')
        {
            counters.insert(name.to_owned());
        }
    }
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, ty) = match ty {
                "counter" => (format!("{name}_total"), "counter"),
                "gauge" | "histogram" | "summary" => (name.to_owned(), ty),
                "info" | "stateset" => (name.to_owned(), "gauge"),
                _ => (name.to_owned(), "untyped"),
            };
            out.push_str(&format!("# TYPE {name} {ty}\n"));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let name = if counters.contains(name) {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            out.push_str(&format!("# HELP {name} {help}\n"));
            continue;
        }
        let metric = line.split(['{', ' ']).next().unwrap_or_default();
        if metric
            .strip_suffix("_created")
            .is_some_and(|base| counters.contains(base))
        {
            continue;
        }
        out.push_str(strip_exemplar(line));
        out.push('\n');
    }
    out
}

/// A sample line without its exemplar (` # {...} value`). Label values may contain
/// ` # {` themselves, so the exemplar is looked for only after the label set.
fn strip_exemplar(line: &str) -> &str {
    let mut labels_end = 0;
    if let Some(open) = line.find('{')
        && line[..open].find(' ').is_none()
    {
        let (mut in_quotes, mut escaped) = (false, false);
        for (i, c) in line[open..].char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_quotes => escaped = true,
                '"' => in_quotes = !in_quotes,
                '}' if !in_quotes => {
                    labels_end = open + i + 1;
                    break;
                }
                _ => {}
            }
        }
    }
    match line[labels_end..].find(" # ") {
        Some(i) => &line[..labels_end + i],
        None => line,
    }
}

/// Whether a scraper's `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_counters_histograms_and_drops_openmetrics_only_lines() {
        let om = "# HELP skaffold_builds Builds.\n# TYPE skaffold_builds counter\n\
skaffold_builds_total{artifact=\"a\",result=\"success\"} 2\n\
skaffold_builds_created{artifact=\"a\",result=\"success\"} 1.7e9\n\
# HELP skaffold_build_duration_seconds Time.\n# TYPE skaffold_build_duration_seconds histogram\n\
# UNIT skaffold_build_duration_seconds seconds\n\
skaffold_build_duration_seconds_bucket{le=\"1.0\"} 1 # {trace_id=\"ab\"} 0.5 1.7e9\n\
skaffold_build_duration_seconds_sum 0.5\n# EOF\n";
        let text = openmetrics_to_prometheus(om);
        assert_eq!(
            text,
            "# HELP skaffold_builds_total Builds.\n# TYPE skaffold_builds_total counter\n\
skaffold_builds_total{artifact=\"a\",result=\"success\"} 2\n\
# HELP skaffold_build_duration_seconds Time.\n# TYPE skaffold_build_duration_seconds histogram\n\
skaffold_build_duration_seconds_bucket{le=\"1.0\"} 1\n\
skaffold_build_duration_seconds_sum 0.5\n"
        );
    }

    #[test]
    fn exemplar_markers_inside_label_values_survive() {
        let line = r#"x_bucket{artifact="a # {b}\" }",le="1.0"} 3 # {trace_id="ab"} 0.5 1.7e9"#;
        assert_eq!(
            strip_exemplar(line),
            r#"x_bucket{artifact="a # {b}\" }",le="1.0"} 3"#
        );
        assert_eq!(strip_exemplar("x_sum 0.5"), "x_sum 0.5");
        assert_eq!(
            strip_exemplar("x_count 2 # {trace_id=\"ab\"} 1"),
            "x_count 2"
        );
    }

    #[test]
    fn negotiates_on_accept() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(None));
    }
}
