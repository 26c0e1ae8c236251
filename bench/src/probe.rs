//! What `/proc` says about the processes and the host: memory, CPU time,
//! kernel counters, and peaks sampled while work runs.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Memory {
    pub(crate) rss_kb: u64,
    pub(crate) anon_kb: u64,
    pub(crate) file_kb: u64,
    pub(crate) hwm_kb: u64,
}

impl Memory {
    pub(crate) fn mib(&self) -> f64 {
        self.rss_kb as f64 / 1024.0
    }

    pub(crate) fn note(&self) -> String {
        format!(
            "VmRSS {} kB (anon {} kB, file {} kB), peak {} kB",
            self.rss_kb, self.anon_kb, self.file_kb, self.hwm_kb
        )
    }
}

pub(crate) fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Ok(Memory {
        rss_kb: field("VmRSS:"),
        anon_kb: field("RssAnon:"),
        file_kb: field("RssFile:"),
        hwm_kb: field("VmHWM:"),
    })
}

/// CPU time the live threads of a process have run, in seconds, from the
/// scheduler's nanosecond counters (`utime`/`stime` in `/proc/<pid>/stat` are
/// sampled at ticks and miss the short bursts a node runs in).
pub(crate) fn cpu_seconds(pid: &str) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut nanos: u64 = 0;
    for task in tasks.flatten() {
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        nanos += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(nanos as f64 / 1e9)
}

/// System-wide TCP counters (`/proc/net/snmp`, `/proc/net/netstat`) that show
/// the kernel dropping or delaying connections. Other programs on the host move
/// them too.
pub(crate) const KERNEL_COUNTERS: [&str; 8] = [
    "ActiveOpens",
    "RetransSegs",
    "AttemptFails",
    "ListenOverflows",
    "SyncookiesSent",
    "TCPSynRetrans",
    "TCPTimeWaitOverflow",
    "TCPReqQFullDrop",
];

pub(crate) fn kernel_counters() -> Vec<(&'static str, i64)> {
    let mut found = Vec::new();
    for file in ["/proc/net/snmp", "/proc/net/netstat"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.chunks(2) {
            let [names, values] = pair else { continue };
            for (name, value) in names.split_whitespace().zip(values.split_whitespace()).skip(1) {
                if let Some(key) = KERNEL_COUNTERS.iter().find(|k| **k == name) {
                    if let Ok(value) = value.parse() {
                        found.push((*key, value));
                    }
                }
            }
        }
    }
    // Connection tracking: packets dropped because its table was full, and
    // entries evicted early to make room. One row per CPU, in hex.
    if let Ok(text) = std::fs::read_to_string("/proc/net/stat/nf_conntrack") {
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
        for (column, label) in [
            ("drop", "conntrack_drop"),
            ("early_drop", "conntrack_early_drop"),
            ("insert_failed", "conntrack_insert_failed"),
        ] {
            let Some(index) = header.iter().position(|h| *h == column) else {
                continue;
            };
            let sum: i64 = text
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(index))
                .filter_map(|v| i64::from_str_radix(v, 16).ok())
                .sum();
            found.push((label, sum));
        }
    }
    found
}

/// Counters that moved between two readings, as `name +delta`.
pub(crate) fn counter_deltas(before: &[(&'static str, i64)], after: &[(&'static str, i64)]) -> String {
    let mut moved = Vec::new();
    for (name, value) in after {
        let old = before.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v);
        if *value != old {
            moved.push(format!("{name} +{}", value - old));
        }
    }
    if moved.is_empty() {
        "none moved".into()
    } else {
        moved.join(", ")
    }
}

/// Entries in the connection-tracking table and its size, when netfilter tracks connections.
pub(crate) fn conntrack() -> Option<(u64, u64)> {
    let read = |path: &str| std::fs::read_to_string(path).ok()?.trim().parse().ok();
    Some((read("/proc/sys/net/netfilter/nf_conntrack_count")?, read("/proc/sys/net/netfilter/nf_conntrack_max")?))
}

/// Sockets in TIME_WAIT, host-wide.
pub(crate) fn time_wait() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    while let Some(word) = words.next() {
        if word == "tw" {
            return words.next()?.parse().ok();
        }
    }
    None
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The soft limit on open files, and how many this process has open.
pub(crate) fn fd_budget() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?.parse().ok()?;
    let open = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some((soft, open))
}

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Host-wide peaks: conntrack entries (with the table's size) and TIME_WAIT sockets.
#[derive(Default)]
pub(crate) struct Peaks {
    pub(crate) conntrack: Option<(u64, u64)>,
    pub(crate) time_wait: u64,
}

impl Peaks {
    fn sample(&mut self) {
        if let (Some((count, max)), Some((peak, _))) = (conntrack(), self.conntrack) {
            self.conntrack = Some((count.max(peak), max));
        }
        self.time_wait = self.time_wait.max(time_wait().unwrap_or(0));
    }
}

/// Runs `work`, sampling the [`Peaks`] every 0.5 s meanwhile and once at its end.
pub(crate) async fn with_peaks<T>(work: impl Future<Output = T>) -> (T, Peaks) {
    let mut peaks = Peaks { conntrack: conntrack(), time_wait: time_wait().unwrap_or(0) };
    let mut work = std::pin::pin!(work);
    let mut ticks = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            done = &mut work => {
                peaks.sample();
                return (done, peaks);
            }
            _ = ticks.tick() => peaks.sample(),
        }
    }
}
