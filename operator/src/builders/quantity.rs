//! Byte sizes from Kubernetes quantities, for `spill.max_bytes`.
//!
//! Only the forms the CRD schema admits are handled (`^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$`);
//! anything else is an error rather than a guess.

/// Bytes in a quantity like `1Gi`, `500M` or `1048576`.
pub fn parse_bytes(q: &str) -> Option<u64> {
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (digits, suffix) = q.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let mult: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn parses_the_schema_forms() {
        assert_eq!(parse_bytes("1Gi"), Some(1_073_741_824));
        assert_eq!(parse_bytes("500M"), Some(500_000_000));
        assert_eq!(parse_bytes("2Ki"), Some(2048));
        assert_eq!(parse_bytes("1048576"), Some(1_048_576));
        assert_eq!(parse_bytes("1.5Gi"), None);
        assert_eq!(parse_bytes("Gi"), None);
        assert_eq!(parse_bytes("1Pi"), None);
        assert_eq!(parse_bytes("99999999999Ti"), None);
    }
}
