//! The benchmark's results: rows with their targets, printed as a table and,
//! with `--json`, as a JSON document.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::cli::Cli;

#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    pub(crate) fn met(self, value: f64) -> bool {
        match self {
            Target::AtLeast(t) => value >= t,
            Target::AtMost(t) => value <= t,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) section: String,
    pub(crate) metric: String,
    pub(crate) value: Option<f64>,
    pub(crate) unit: &'static str,
    pub(crate) target: Option<Target>,
    pub(crate) note: String,
}

impl Row {
    pub(crate) fn result(&self) -> &'static str {
        match (self.target, self.value) {
            (None, _) => "",
            (Some(t), Some(v)) if t.met(v) => "PASS",
            (Some(_), _) => "MISS",
        }
    }
}

#[derive(Clone, Default)]
pub(crate) struct Rows(Arc<Mutex<Vec<Row>>>);

impl Rows {
    pub(crate) fn push(
        &self,
        section: &str,
        metric: impl Into<String>,
        value: Option<f64>,
        unit: &'static str,
        target: Option<Target>,
        note: impl Into<String>,
    ) {
        let row = Row { section: section.into(), metric: metric.into(), value, unit, target, note: note.into() };
        eprintln!(
            "  {} {}: {} {} {}",
            row.section,
            row.metric,
            row.value.map_or("n/a".into(), |v| fmt_value(v, unit)),
            row.unit,
            row.result()
        );
        wire::lock(&self.0).push(row);
    }

    pub(crate) fn info(
        &self,
        section: &str,
        metric: impl Into<String>,
        value: f64,
        unit: &'static str,
        note: impl Into<String>,
    ) {
        self.push(section, metric, Some(value), unit, None, note);
    }

    pub(crate) fn error(
        &self,
        section: &str,
        metric: impl Into<String>,
        target: Option<Target>,
        error: impl Into<String>,
    ) {
        self.push(section, metric, None, "", target, error);
    }

    pub(crate) fn snapshot(&self) -> Vec<Row> {
        wire::lock(&self.0).clone()
    }
}

fn fmt_value(value: f64, unit: &str) -> String {
    match unit {
        "ops/s" | "" => thousands(value.round() as u64),
        "ms" => format!("{value:.3}"),
        "s" => format!("{value:.3}"),
        "MiB" | "MB" => format!("{value:.2}"),
        "µs" => format!("{value:.0}"),
        "CPU s" | "x" => format!("{value:.2}"),
        _ => format!("{value}"),
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fmt_target(target: Option<Target>, unit: &str) -> String {
    match target {
        None => String::new(),
        Some(Target::AtLeast(t)) => format!(">= {}", fmt_value(t, unit)),
        Some(Target::AtMost(t)) => format!("<= {}", fmt_value(t, unit)),
    }
}

fn table(rows: &[Row]) -> String {
    let header = ["section", "metric", "value", "unit", "target", "result", "notes"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.section.clone(),
                r.metric.clone(),
                match (r.value, r.unit) {
                    (_, "note") => String::new(),
                    (None, _) => "n/a".into(),
                    (Some(v), unit) => fmt_value(v, unit),
                },
                if r.unit == "note" { String::new() } else { r.unit.to_owned() },
                fmt_target(r.target, r.unit),
                r.result().to_owned(),
                r.note.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row).take(6) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cols: [&str; 7]| {
        let mut s = String::new();
        for (i, col) in cols.iter().enumerate() {
            if i == 6 {
                s.push_str(col);
            } else if i == 2 {
                s.push_str(&format!("{:>w$}  ", col, w = widths[i]));
            } else {
                s.push_str(&format!("{:<w$}  ", col, w = widths[i]));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header);
    out.push_str(&line(widths.map(|w| "-".repeat(w)).each_ref().map(String::as_str)));
    for row in &cells {
        out.push_str(&line(row.each_ref().map(String::as_str)));
    }
    out
}

fn to_json(rows: &[Row], elapsed: Duration, cli: &Cli) -> Value {
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            let target = r.target.map(|t| match t {
                Target::AtLeast(v) => json!({"at_least": v}),
                Target::AtMost(v) => json!({"at_most": v}),
            });
            json!({
                "section": r.section, "metric": r.metric, "value": r.value, "unit": r.unit,
                "target": target, "result": (!r.result().is_empty()).then(|| r.result()), "note": r.note,
            })
        })
        .collect();
    json!({
        "elapsed_s": elapsed.as_secs_f64(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "sections": cli.only.iter().map(|s| s.name()).collect::<Vec<_>>(), "nodes": cli.nodes, "local_nodes": cli.local_sizes(),
        "rows": rows,
    })
}

pub(crate) fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

/// Prints the table (and the JSON document), and returns the exit code: 1
/// when a target was missed or the run was cut short.
pub(crate) fn print(rows: &[Row], cli: &Cli, elapsed: Duration, interrupted: Option<&str>) -> ExitCode {
    let text = table(rows);
    let why = interrupted.map(|why| format!(" ({why})")).unwrap_or_default();
    let summary = format!("bench took {:.1} s{why}\n", elapsed.as_secs_f64());
    if cli.json {
        eprint!("\n{text}{summary}");
        println!("{}", serde_json::to_string_pretty(&to_json(rows, elapsed, cli)).expect("JSON serializes"));
    } else {
        print!("\n{text}{summary}");
    }
    let missed = rows.iter().any(|r| r.result() == "MISS");
    if interrupted.is_some() || missed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
