//! `local`: `launcher up --runtime local --detach`, the mesh as local processes.

use std::time::Duration;

use anyhow::bail;

use crate::launcher::{launcher, report_runs, Finished, LAUNCHER_SLACK};
use crate::probe::{counter_deltas, kernel_counters, with_peaks};
use crate::report::Rows;

/// `--timeout` of the local meshes.
pub(crate) const LOCAL_TIMEOUT: Duration = Duration::from_secs(120);

/// Every size, after an untimed warm-up.
pub(crate) async fn bench_local_sizes(rows: &Rows, sizes: &[usize]) -> anyhow::Result<()> {
    if let Err(error) = local_warmup().await {
        rows.error("local", "warm-up", None, format!("{error:#}"));
    }
    for &n in sizes {
        let section = format!("local N={n}");
        crate::one_size(rows, &section, bench_local(rows, &section, n)).await;
    }
    Ok(())
}

/// `launcher up --runtime local` with `nodes` nodes.
pub(crate) async fn up_local(nodes: usize) -> anyhow::Result<Finished> {
    let n = nodes.to_string();
    let timeout = format!("{}s", LOCAL_TIMEOUT.as_secs());
    let args = ["up", "--runtime", "local", "--nodes", &n, "--detach", "--quiet", "--json", "--timeout", &timeout];
    launcher(&args, LOCAL_TIMEOUT + LAUNCHER_SLACK).await
}

/// An untimed run first: `up --runtime local` runs cargo to build the native
/// binaries, which takes long only when the sources changed.
pub(crate) async fn local_warmup() -> anyhow::Result<()> {
    let warmup = up_local(2).await?;
    eprintln!("  local: warm-up (not timed): {}", warmup.describe());
    if !warmup.complete() {
        bail!("{}", warmup.describe());
    }
    Ok(())
}

pub(crate) async fn bench_local(rows: &Rows, section: &str, nodes: usize) -> anyhow::Result<()> {
    let counters_before = kernel_counters();
    let (up, peaks) = with_peaks(up_local(nodes)).await;
    let up = up?;
    eprintln!("  {section}: {}", up.describe());
    report_runs(rows, section, &[up], None);
    let conntrack =
        peaks.conntrack.map_or(String::new(), |(peak, max)| format!("; conntrack peak {peak} of {max} entries"));
    rows.push(
        section,
        "kernel TCP counters",
        None,
        "note",
        None,
        format!(
            "host-wide deltas: {}{conntrack}; TIME_WAIT peak {}; sampled every 0.5 s",
            counter_deltas(&counters_before, &kernel_counters()),
            peaks.time_wait
        ),
    );
    Ok(())
}
