//! For tests of the services that use this crate: a strict parser of the Prometheus text
//! format 0.0.4 and a plain HTTP GET, so that a test reads `/metrics` the way a scraper does.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (for a histogram: `<family>_bucket`, `_sum`, `_count`).
    pub name: String,
    /// Its labels, by name.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// A scrape, parsed: every sample, and each family's declared type.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// The samples, in order.
    pub samples: Vec<Sample>,
    /// `# TYPE` of each family.
    pub types: BTreeMap<String, String>,
}

impl Scrape {
    /// The value of the sample `name` whose labels include all of `labels`; None if there is
    /// none. Panics if several match (the question was ambiguous).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut matching = self.samples.iter().filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
        });
        let first = matching.next()?;
        assert!(
            matching.next().is_none(),
            "several samples of {name} match {labels:?}"
        );
        Some(first.value)
    }
}

/// Parses Prometheus text format 0.0.4 strictly: every line is a `# HELP`, a `# TYPE` or a
/// sample of a family whose type was declared before it; names and label names are valid;
/// label values are quoted with only `\\`, `\"` and `\n` escapes; values are numbers; histogram
/// buckets are cumulative and end with `le="+Inf"` equal to `_count`.
pub fn parse_text(text: &str) -> Result<Scrape, String> {
    let mut scrape = Scrape::default();
    for (number, line) in text.lines().enumerate() {
        let fail = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), _) if is_metric_name(name) => {}
                (Some("TYPE"), Some(name), Some(kind)) if is_metric_name(name) => {
                    if !matches!(
                        kind,
                        "counter" | "gauge" | "histogram" | "summary" | "untyped"
                    ) {
                        return Err(fail("unknown type"));
                    }
                    if scrape.types.insert(name.into(), kind.into()).is_some() {
                        return Err(fail("a second TYPE for one family"));
                    }
                }
                _ => return Err(fail("a comment that is neither HELP nor TYPE")),
            }
            continue;
        }
        let sample = parse_sample(line).map_err(|why| fail(&why))?;
        if family_type(&scrape.types, &sample.name).is_none() {
            return Err(fail("a sample of an undeclared family"));
        }
        scrape.samples.push(sample);
    }
    check_histograms(&scrape)?;
    Ok(scrape)
}

fn family_type<'a>(types: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    if let Some(kind) = types.get(name) {
        return Some(kind);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let family = name.strip_suffix(suffix)?;
        types
            .get(family)
            .filter(|k| *k == "histogram" || (*k == "summary" && *suffix != "_bucket"))
            .map(String::as_str)
    })
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err("an invalid metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let mut fields = rest.split(' ');
    let value = parse_value(fields.next().ok_or("no value")?)?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| "an invalid timestamp")?;
    }
    if fields.next().is_some() {
        return Err("text after the timestamp".into());
    }
    Ok(Sample {
        name: name.into(),
        labels,
        value,
    })
}

/// Parses `name="value",...}`; returns what follows the closing brace.
fn parse_labels<'a>(
    mut text: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    loop {
        if let Some(rest) = text.strip_prefix('}') {
            return Ok(rest);
        }
        let (name, rest) = text.split_once("=\"").ok_or("a label without =\"")?;
        if !is_label_name(name) {
            return Err(format!("an invalid label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    _ => return Err("an invalid escape in a label value".into()),
                },
                Some((_, '\n')) | None => return Err("an unterminated label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.into(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        text = &rest[end + 1..];
        if let Some(after) = text.strip_prefix(',') {
            text = after;
        } else if !text.starts_with('}') {
            return Err("labels not separated by commas".into());
        }
    }
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse::<f64>()
            .map_err(|_| format!("an invalid value {text:?}")),
    }
}

/// A series' labels other than `le`, in name order.
type Labels = Vec<(String, String)>;

/// Buckets of each histogram series are cumulative, and `+Inf` equals `_count`.
fn check_histograms(scrape: &Scrape) -> Result<(), String> {
    for (family, _) in scrape.types.iter().filter(|(_, k)| *k == "histogram") {
        let bucket_name = format!("{family}_bucket");
        let count_name = format!("{family}_count");
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for sample in scrape.samples.iter().filter(|s| s.name == bucket_name) {
            let le = parse_value(sample.labels.get("le").ok_or("a bucket without le")?)?;
            let key = sample
                .labels
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            series.entry(key).or_default().push((le, sample.value));
        }
        for (key, buckets) in &series {
            let cumulative = buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
            let last = buckets.last().ok_or("no buckets")?;
            let count = scrape.samples.iter().find(|s| {
                s.name == count_name
                    && s.labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .eq(key.iter().cloned())
            });
            if !cumulative || last.0 != f64::INFINITY || count.map(|c| c.value) != Some(last.1) {
                return Err(format!("histogram {family} {key:?} is inconsistent"));
            }
        }
    }
    Ok(())
}

/// An HTTP answer: status, headers (names lower-cased) and body.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

/// `GET path` from `address` over a fresh HTTP/1.1 connection (closed after the answer).
pub fn get(address: SocketAddr, path: &str) -> std::io::Result<HttpAnswer> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(invalid)?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(invalid)?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpAnswer {
        status,
        headers,
        body: body.to_string(),
    })
}

/// Finds the address in a line with [`crate::LISTENING_PHRASE`] (text or JSON log format).
pub fn listening_address(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(crate::LISTENING_PHRASE)? + crate::LISTENING_PHRASE.len()..];
    let address: String = rest
        .trim_start()
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect();
    address.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parser_takes_valid_text_and_refuses_malformed_lines() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\\\"2\"} 3\n\
                    # TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\n\
                    h_sum 0.3\nh_count 2\n";
        let scrape = parse_text(text).unwrap();
        assert_eq!(scrape.value("a_total", &[("x", "1\"2")]), Some(3.0));
        assert_eq!(scrape.value("h_count", &[]), Some(2.0));
        for bad in [
            "b_total 1\n",
            "# TYPE a counter\na{x=1} 1\n",
            "# TYPE a counter\na 1 2 3\n",
            "# TYPE a counter\na one\n",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n",
            "# nonsense\n",
        ] {
            assert!(parse_text(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
