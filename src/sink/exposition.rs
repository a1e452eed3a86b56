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

/// The text formats `/metrics` can answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics text 1.0.0.
    OpenMetrics,
    /// Prometheus text 0.0.4.
    Prometheus,
}

/// The `q` of a header element's parameters (`;q=0.5`); 1 when absent, 0 when
/// unparsable (RFC 9110: a weight is 0 to 1 with at most three decimals).
fn weight<'a>(params: impl Iterator<Item = &'a str>) -> f32 {
    for p in params {
        if let Some((k, v)) = p.split_once('=')
            && k.trim().eq_ignore_ascii_case("q")
        {
            return v
                .trim()
                .parse::<f32>()
                .ok()
                .filter(|q| (0.0..=1.0).contains(q))
                .unwrap_or(0.0);
        }
    }
    1.0
}

/// Picks the format for a scraper's `Accept` header (RFC 9110 §12.5.1): each format
/// gets the weight of the most specific media range that matches it
/// (`application/openmetrics-text` over `application/*` over `*/*`), `q=0` excludes.
/// The heavier wins; on a tie OpenMetrics when both were named, Prometheus text when
/// only wildcards matched. `None` (406 Not Acceptable) when the header excludes both
/// with `q=0`; a header that names neither gets Prometheus text, as from
/// Prometheus' own client libraries.
pub fn negotiate(accept: Option<&str>) -> Option<Format> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(Format::Prometheus);
    };
    // (specificity, weight) of the most specific match per format; 0 is */*.
    let mut best: [Option<(u8, f32)>; 2] = [None; 2];
    for element in accept.split(',') {
        let mut parts = element.split(';');
        let range = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = weight(parts);
        let matches = |ty: &str, sub: &str| -> Option<u8> {
            match range.split_once('/')? {
                (t, s) if t == ty && s == sub => Some(2),
                (t, "*") if t == ty => Some(1),
                ("*", "*") => Some(0),
                _ => None,
            }
        };
        for (i, (ty, sub)) in [("application", "openmetrics-text"), ("text", "plain")]
            .into_iter()
            .enumerate()
        {
            if let Some(spec) = matches(ty, sub)
                && best[i].is_none_or(|(s, _)| spec > s)
            {
                best[i] = Some((spec, q));
            }
        }
    }
    let [om, text] = best;
    let (qo, qt) = (om.map_or(0.0, |b| b.1), text.map_or(0.0, |b| b.1));
    if qo <= 0.0 && qt <= 0.0 {
        // Excluded with q=0 (and nothing else acceptable) is 406; a header that names
        // neither format gets the default.
        let excluded = om.is_some() || text.is_some();
        return (!excluded).then_some(Format::Prometheus);
    }
    // Weight first, then how specific the match was; a tie of equals goes to
    // OpenMetrics when both were named, to Prometheus text when matched by wildcards.
    let (so, st) = (om.map_or(0, |b| b.0), text.map_or(0, |b| b.0));
    let om_wins = match qo.total_cmp(&qt).then(so.cmp(&st)) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => so == 2,
    };
    Some(if om_wins {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    })
}

/// Whether a scraper's `Accept-Encoding` header accepts gzip (`gzip` or `*` with a
/// weight above 0; `gzip;q=0` refuses it).
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(h) = accept_encoding else {
        return false;
    };
    let (mut gzip, mut star) = (None, None);
    for element in h.split(',') {
        let mut parts = element.split(';');
        let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = weight(parts);
        match coding.as_str() {
            "gzip" | "x-gzip" => gzip = Some(q),
            "*" => star = Some(q),
            _ => {}
        }
    }
    gzip.or(star).is_some_and(|q| q > 0.0)
}

/// Gzips `body` (for `Content-Encoding: gzip`).
pub fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(body).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
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
    fn negotiates_on_accept_with_weights() {
        use Format::*;
        let n = |a: &str| negotiate(Some(a));
        // Prometheus 2 and 3 as they send it.
        assert_eq!(
            n(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            ),
            Some(OpenMetrics)
        );
        assert_eq!(
            n(
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
            ),
            Some(OpenMetrics)
        );
        // Prometheus with scrape_protocols: [PrometheusText0.0.4] first.
        assert_eq!(
            n(
                "text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,*/*;q=0.1"
            ),
            Some(Prometheus)
        );
        assert_eq!(n("text/plain;version=0.0.4"), Some(Prometheus));
        assert_eq!(negotiate(None), Some(Prometheus));
        assert_eq!(n(""), Some(Prometheus));
        // curl's */*: the classic text.
        assert_eq!(n("*/*"), Some(Prometheus));
        assert_eq!(n("application/*"), Some(OpenMetrics));
        // q=0 excludes, even when listed first or matched by a wildcard too.
        assert_eq!(n("application/openmetrics-text;q=0,*/*"), Some(Prometheus));
        assert_eq!(
            n("application/openmetrics-text, text/plain;q=0"),
            Some(OpenMetrics)
        );
        assert_eq!(n("text/plain;q=0, */*;q=0.3"), Some(OpenMetrics));
        assert_eq!(n("text/plain;q=0,application/openmetrics-text;q=0"), None);
        assert_eq!(n("*/*;q=0"), None);
        // A tie between two named formats: OpenMetrics; unparsable weights count as 0.
        assert_eq!(
            n("text/plain, application/openmetrics-text"),
            Some(OpenMetrics)
        );
        assert_eq!(
            n("application/openmetrics-text;q=bad,text/plain;q=0.1"),
            Some(Prometheus)
        );
        // Nothing we speak named: the default, as client libraries do.
        assert_eq!(n("application/json"), Some(Prometheus));
    }

    #[test]
    fn gzip_only_when_accepted() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, gzip;q=0.5")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("gzip;q=0, *")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
        let body = "x 1\n".repeat(1000);
        let z = gzip(body.as_bytes());
        assert!(z.len() < body.len() / 10);
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&z[..]), &mut out).unwrap();
        assert_eq!(out, body);
    }
}
