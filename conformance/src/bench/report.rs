//! Output of the benchmark: one human line per phase and a JSON summary.

use std::fmt::Write as _;

use super::workload::PhaseResult;

/// Parses a size such as `4096`, `4KiB`, `4K`, `64MiB`, `1GiB`, `10MB`
/// (binary for K/M/G/KiB/MiB/GiB, decimal for KB/MB/GB).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 4096, 4KiB, 64MiB, 1GiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit (use B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `65536` -> `64KiB`, `67108864` -> `64MiB`, `1500` -> `1500B`.
pub fn format_size(n: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    if n >= 1 << 20 {
        return format!("{:.1}MiB", n as f64 / (1u64 << 20) as f64);
    }
    format!("{n}B")
}

/// Microseconds as `850us`, `2.1ms` or `1.25s`.
pub fn format_micros(us: u64) -> String {
    if us < 1_000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

/// One line, e.g. `PUT 64MiB x 12 conc=4: 312.4 MiB/s ...` or
/// `GET 4KiB x 23450 conc=8: 2345 ops/s p50 2.1ms p99 9.8ms max 15.0ms ...`.
pub fn human_line(r: &PhaseResult) -> String {
    let lat = &r.latency;
    let head = format!(
        "{} {} x {} conc={}:",
        r.op.as_str(),
        format_size(r.workload.size),
        r.ops,
        r.concurrency
    );
    let pcts = format!(
        "p50 {} p99 {} max {}",
        format_micros(lat.quantile(0.50)),
        format_micros(lat.quantile(0.99)),
        format_micros(lat.max())
    );
    let tail = format!("in {:.2}s, {} errors", r.secs(), r.errors);
    if r.workload.throughput && r.bytes > 0 {
        format!(
            "{head} {:.1} MiB/s ({:.1} ops/s, {pcts}) {tail}",
            r.mib_per_sec(),
            r.ops_per_sec()
        )
    } else {
        format!("{head} {:.0} ops/s {pcts} ({tail})", r.ops_per_sec())
    }
}

/// Everything a script needs, as one JSON object.
pub fn json_summary(endpoint: &str, bucket: &str, prefix: &str, phases: &[PhaseResult]) -> String {
    let errors: u64 = phases.iter().map(|p| p.errors).sum();
    let mut s = String::new();
    let _ = write!(
        s,
        "{{\"endpoint\":{},\"bucket\":{},\"prefix\":{},\"errors\":{errors},\"phases\":[",
        json_str(endpoint),
        json_str(bucket),
        json_str(prefix)
    );
    for (i, p) in phases.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let l = &p.latency;
        let ms = |us: u64| us as f64 / 1e3;
        let _ = write!(
            s,
            "{{\"workload\":{},\"op\":{},\"object_size\":{},\"concurrency\":{},\
             \"ops\":{},\"errors\":{},\"bytes\":{},\"seconds\":{:.6},\
             \"ops_per_sec\":{:.3},\"mib_per_sec\":{:.3},\
             \"latency_ms\":{{\"mean\":{:.3},\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"max\":{:.3}}},\
             \"error_samples\":[{}]}}",
            json_str(p.workload.name),
            json_str(p.op.as_str()),
            p.workload.size,
            p.concurrency,
            p.ops,
            p.errors,
            p.bytes,
            p.secs(),
            p.ops_per_sec(),
            p.mib_per_sec(),
            l.mean() / 1e3,
            ms(l.quantile(0.50)),
            ms(l.quantile(0.90)),
            ms(l.quantile(0.99)),
            ms(l.max()),
            p.error_samples
                .iter()
                .map(|e| json_str(e))
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    s.push_str("]}");
    s
}

fn json_str(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip() {
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("4XB").is_err());
        assert_eq!(format_size(4096), "4KiB");
        assert_eq!(format_size(64 << 20), "64MiB");
        assert_eq!(format_size(1000), "1000B");
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
