//! Reading `/metrics` back: a strict parser of the text format that
//! prometheus-client writes (OpenMetrics 1.0 text, the subset of it without
//! exemplars or timestamps), for `launcher stats` and the tests.
//!
//! Strict: every family is declared (`# HELP` and `# TYPE`) once, before its
//! samples; every sample belongs to the family declared last, with the
//! suffixes its type allows; labels are quoted with the format's escapes and
//! never repeated; values are numbers; `# EOF` ends the text, and nothing
//! follows it.

use std::collections::{BTreeMap, HashSet};

/// One family of metrics, as declared and sampled.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: Kind,
    pub help: String,
    pub samples: Vec<Sample>,
}

/// A family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Info,
    Unknown,
}

impl Kind {
    fn parse(text: &str) -> Option<Kind> {
        Some(match text {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "histogram" => Kind::Histogram,
            "info" => Kind::Info,
            "unknown" => Kind::Unknown,
            _ => return None,
        })
    }

    /// The suffixes a sample name of this type may add to its family's name.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            Kind::Counter => &["_total", "_created"],
            Kind::Gauge | Kind::Unknown => &[""],
            Kind::Histogram => &["_bucket", "_sum", "_count", "_created"],
            Kind::Info => &["_info"],
        }
    }
}

/// One sample: its full name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Where the text breaks the format, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ParseError {
    pub line: usize,
    pub problem: String,
}

/// The families of `text`, in order.
pub fn parse(text: &str) -> Result<Vec<Family>, ParseError> {
    let mut families: Vec<Family> = Vec::new();
    let mut declared = HashSet::new();
    let mut help: Option<(String, String)> = None;
    let mut ended = false;
    for (index, line) in text.lines().enumerate() {
        let fail = |problem: String| ParseError { line: index + 1, problem };
        if ended {
            return Err(fail("text after # EOF".into()));
        }
        if line == "# EOF" {
            ended = true;
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').ok_or_else(|| fail("a HELP without text".into()))?;
            check_name(name).map_err(fail)?;
            help = Some((name.to_owned(), text.to_owned()));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| fail("a TYPE without a type".into()))?;
            let kind = Kind::parse(kind).ok_or_else(|| fail(format!("unknown type `{kind}`")))?;
            let help = match help.take() {
                Some((helped, text)) if helped == name => text,
                _ => return Err(fail(format!("TYPE of `{name}` without its HELP just before"))),
            };
            if !declared.insert(name.to_owned()) {
                return Err(fail(format!("`{name}` declared twice")));
            }
            families.push(Family { name: name.to_owned(), kind, help, samples: Vec::new() });
        } else if line.starts_with('#') {
            return Err(fail("a comment that is neither HELP, TYPE nor EOF".into()));
        } else {
            let family = families.last_mut().ok_or_else(|| fail("a sample before any TYPE".into()))?;
            let sample = sample(line).map_err(fail)?;
            let suffix = sample.name.strip_prefix(family.name.as_str());
            if !suffix.is_some_and(|suffix| family.kind.suffixes().contains(&suffix)) {
                return Err(fail(format!("sample `{}` is not of family `{}`", sample.name, family.name)));
            }
            family.samples.push(sample);
        }
    }
    if !ended {
        return Err(ParseError { line: text.lines().count(), problem: "no # EOF at the end".into() });
    }
    Ok(families)
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("`{name}` is no metric name"))
    }
}

fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("a sample without a value")?;
    let name = &line[..name_end];
    check_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = parse_labels(inner, &mut labels)?;
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    if value.contains(' ') {
        return Err("a timestamp or exemplar, which this format's writer never adds".into());
    }
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        number => number.parse().map_err(|_| format!("`{number}` is no number"))?,
    };
    Ok(Sample { name: name.to_owned(), labels, value })
}

/// Reads `name="value",...}` into `labels`; returns what follows the `}`.
fn parse_labels<'a>(mut text: &'a str, labels: &mut BTreeMap<String, String>) -> Result<&'a str, String> {
    loop {
        if let Some(rest) = text.strip_prefix('}') {
            return Ok(rest);
        }
        let (name, rest) = text.split_once("=\"").ok_or("a label without =\"")?;
        check_name(name)?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().ok_or("an unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("an unterminated escape")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    other => return Err(format!("unknown escape `\\{other}`")),
                },
                (_, '\n') => return Err("a newline in a label value".into()),
                (_, c) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label `{name}` twice"));
        }
        text = &rest[end + 1..];
        text = text.strip_prefix(',').unwrap_or(text);
    }
}

impl Family {
    /// The value of the sample named `name` whose labels include `labels`;
    /// the sum over every such sample.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|sample| sample.value).sum()
    }

    fn matching<'a>(&'a self, name: &'a str, labels: &'a [(&str, &str)]) -> impl Iterator<Item = &'a Sample> {
        self.samples.iter().filter(move |sample| {
            sample.name == name && labels.iter().all(|(k, v)| sample.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The `q` quantile of a histogram, over all its label sets, estimated
    /// as Prometheus's `histogram_quantile` does: linearly within the
    /// bucket it falls in. `None` with no observation.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let bucket = format!("{}_bucket", self.name);
        // Bounds by their bits, which order as the bounds do for positive ones.
        let mut by_bound: BTreeMap<u64, f64> = BTreeMap::new();
        for sample in self.matching(&bucket, &[]) {
            let Some(le) = sample.labels.get("le") else { continue };
            let le: f64 = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
            if le >= 0.0 {
                *by_bound.entry(le.to_bits()).or_default() += sample.value;
            }
        }
        let buckets: Vec<(f64, f64)> = by_bound.into_iter().map(|(le, count)| (f64::from_bits(le), count)).collect();
        let total = buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut below = (0.0, 0.0);
        for (le, count) in buckets {
            if count >= rank {
                if le.is_infinite() {
                    return Some(below.0);
                }
                let within = if count > below.1 { (rank - below.1) / (count - below.1) } else { 0.0 };
                return Some(below.0 + (le - below.0) * within);
            }
            below = (le, count);
        }
        None
    }
}

/// The family named `name` among `families`.
pub fn family<'a>(families: &'a [Family], name: &str) -> Option<&'a Family> {
    families.iter().find(|family| family.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family as Labelled;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    fn written() -> String {
        let mut registry = Registry::with_prefix("t");
        let counter: Labelled<Vec<(String, String)>, Counter> = Labelled::default();
        registry.register("hits", "Hits, by way", counter.clone());
        counter.get_or_create(&vec![("way".into(), "a b".into())]).inc_by(3);
        let histogram = Histogram::new([0.1, 0.2, 0.4]);
        registry.register("latency_seconds", "Latency", histogram.clone());
        for value in [0.05, 0.15, 0.15, 0.3] {
            histogram.observe(value);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn what_prometheus_client_writes_reads_back() {
        let families = parse(&written()).unwrap();
        let hits = family(&families, "t_hits").unwrap();
        assert_eq!((hits.kind, hits.help.as_str()), (Kind::Counter, "Hits, by way."));
        assert_eq!(hits.sum("t_hits_total", &[("way", "a b")]), 3.0);
        let latency = family(&families, "t_latency_seconds").unwrap();
        assert_eq!(latency.sum("t_latency_seconds_count", &[]), 4.0);
        // Rank 2 of 4 is the second of the bucket (0.1, 0.2], which holds 2: its middle.
        let median = latency.quantile(0.5).unwrap();
        assert!((median - 0.15).abs() < 1e-9, "{median}");
        assert_eq!(latency.quantile(1.0), Some(0.4));
        let empty = Histogram::new([0.1]);
        let mut registry = Registry::default();
        registry.register("empty", "Nothing", empty);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert_eq!(parse(&text).unwrap()[0].quantile(0.5), None);
    }

    #[test]
    fn a_quantile_counts_every_label_set_of_a_histogram() {
        let text = "# HELP h x\n# TYPE h histogram\n\
                    h_bucket{op=\"a\",le=\"1.0\"} 2\nh_bucket{op=\"a\",le=\"+Inf\"} 2\n\
                    h_bucket{op=\"b\",le=\"1.0\"} 0\nh_bucket{op=\"b\",le=\"+Inf\"} 2\n# EOF\n";
        let families = parse(text).unwrap();
        // Half of the four observations are at most 1, the others above it.
        assert_eq!(families[0].quantile(0.5), Some(1.0));
        assert_eq!(families[0].quantile(0.9), Some(1.0), "past the last finite bound: that bound");
    }

    #[test]
    fn label_values_are_read_with_their_escapes() {
        let text = "# HELP t x\n# TYPE t gauge\nt{a=\"q\\\"\\\\\\n\",b=\"\"} 1\n# EOF\n";
        let families = parse(text).unwrap();
        let labels = &families[0].samples[0].labels;
        assert_eq!((labels["a"].as_str(), labels["b"].as_str()), ("q\"\\\n", ""));
    }

    #[test]
    fn text_that_breaks_the_format_is_refused_with_its_line() {
        let text = written();
        let cases = [
            (text.replace("# EOF\n", ""), "no # EOF"),
            (text.clone() + "x 1\n", "after # EOF"),
            (text.replace("t_hits_total", "t_other_total"), "not of family"),
            (text.replace("} 3", "} three"), "no number"),
            (text.replace("} 3", "} 3 1700000000"), "timestamp"),
            (text.replace("# HELP t_hits ", "# HELP t_hats "), "without its HELP"),
            (text.replace("# TYPE t_hits counter", "# TYPE t_hits summary"), "unknown type"),
            (text.replace("way=\"", "way=\"x\",way=\""), "twice"),
            (text.replace("a b", "a\\tb"), "unknown escape"),
            (text.replace("a b", "a\"b"), "a label without"),
        ];
        for (broken, expected) in cases {
            let error = parse(&broken).expect_err(expected).to_string();
            assert!(error.contains(expected), "{error} (expected {expected})");
        }
    }
}
