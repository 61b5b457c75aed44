//! Just enough of Kubernetes quantities to compare memory and CPU against
//! a limit (the operator, and the gateway's per-key limits).

/// Bytes in a memory quantity such as `256Mi`, `1G`, `512000` or `1.5Gi`.
pub fn memory_bytes(quantity: &str) -> Option<u64> {
    let q = quantity.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * scale;
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

/// Millicores in a CPU quantity such as `500m`, `1` or `1.5`.
pub fn cpu_millis(quantity: &str) -> Option<u64> {
    let q = quantity.trim();
    let (number, scale) = match q.strip_suffix('m') {
        Some(millis) => (millis, 1.0),
        None => (q, 1000.0),
    };
    let millis = number.parse::<f64>().ok()? * scale;
    (millis.is_finite() && millis >= 0.0).then_some(millis.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::{cpu_millis, memory_bytes};

    #[test]
    fn cpu_table() {
        for (q, want) in [("500m", Some(500)), ("1", Some(1000)), ("1.5", Some(1500)), ("2x", None), ("", None)] {
            assert_eq!(cpu_millis(q), want, "{q}");
        }
    }

    #[test]
    fn table() {
        let cases = [
            ("256Mi", Some(268_435_456)),
            ("1Gi", Some(1_073_741_824)),
            ("1.5Gi", Some(1_610_612_736)),
            ("500M", Some(500_000_000)),
            ("64k", Some(64_000)),
            ("1024", Some(1024)),
            ("12Xi", None),
            ("Mi", None),
            ("", None),
        ];
        for (q, want) in cases {
            assert_eq!(memory_bytes(q), want, "{q}");
        }
    }
}
