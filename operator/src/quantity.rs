//! Just enough of Kubernetes quantities to compare memory against a limit.

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

#[cfg(test)]
mod tests {
    use super::memory_bytes;

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
