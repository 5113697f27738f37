//! Figures: percentiles of samples, a plain-text table on stdout, and a JSON file per scenario.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

/// Percentiles of a set of samples, in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Spread {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    /// From samples in microseconds (any order).
    pub fn of_micros(mut samples: Vec<i64>) -> Self {
        samples.sort_unstable();
        let at = |per_mille: usize| -> f64 {
            if samples.is_empty() {
                return f64::NAN;
            }
            let index = ((samples.len() - 1) * per_mille).div_ceil(1000);
            micros_to_ms(samples[index.min(samples.len() - 1)])
        };
        Self {
            count: samples.len(),
            p50_ms: at(500),
            p99_ms: at(990),
            p999_ms: at(999),
            max_ms: at(1000),
        }
    }
}

fn micros_to_ms(us: i64) -> f64 {
    float(us) / 1000.0
}

/// A count or a number of microseconds as a float for a figure (exact below 2^53, far beyond
/// anything measured here).
#[allow(clippy::as_conversions)]
pub fn float(n: i64) -> f64 {
    n as f64
}

pub fn float_u(n: u64) -> f64 {
    float(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Prints `rows` under `header` as an aligned table.
pub fn print_table(title: &str, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.len());
            }
        }
    }
    println!("\n{title}");
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:>width$}", width = widths.get(i).copied().unwrap_or(0)))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    println!(
        "|{}|",
        widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|")
    );
    for row in rows {
        line(row.clone());
    }
}

/// A figure for a table cell: three significant digits at most, no trailing noise.
pub fn ms(value: f64) -> String {
    if value.is_nan() {
        "n/a".to_owned()
    } else if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// Writes `value` as `<out>/<scenario>.json` and says where.
pub fn write_json(out: &Path, scenario: &str, value: &impl Serialize) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("failed to create {}", out.display()))?;
    let path = out.join(format!("{scenario}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("failed to write {}", path.display()))?;
    println!("\nfigures written to {}", path.display());
    Ok(())
}

/// Where and when the figures were taken.
#[derive(Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: u64,
    pub cpu: String,
    pub taken_at: String,
}

impl Machine {
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kb: u64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Self {
            cores: std::thread::available_parallelism()
                .map(std::num::NonZeroUsize::get)
                .unwrap_or(1),
            memory_gib: memory_kb.div_ceil(1024 * 1024),
            cpu: cpuinfo
                .lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
                .unwrap_or_default(),
            taken_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    pub fn print(&self) {
        println!("machine: {} cores, {} GiB, {}", self.cores, self.memory_gib, self.cpu);
    }
}
