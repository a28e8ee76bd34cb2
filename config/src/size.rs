//! Sizes and counts as an admin writes them, in the config file and on the command line:
//! `2G`, `500M`, `64KiB`, `1048576`, and `unlimited`.

/// Octets from `text`: a number with an optional binary unit (K, M, G, T, with or without
/// `iB`/`B`, any case); `unlimited` (or `none`) is `None`. Zero is refused: say `unlimited`.
pub fn parse_size(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    if is_unlimited(t) {
        return Ok(None);
    }
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(size_error(text)),
    };
    let n: u64 = number.parse().map_err(|_| size_error(text))?;
    let bytes = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| size_error(text))?;
    if bytes == 0 {
        return Err(format!(
            "{text:?}: a limit of 0 takes nothing; say \"unlimited\" for none"
        ));
    }
    Ok(Some(bytes))
}

/// A count from `text`; `unlimited` (or `none`) is `None`. Zero is refused: say `unlimited`.
pub fn parse_count(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    if is_unlimited(t) {
        return Ok(None);
    }
    match t.parse::<u64>() {
        Ok(0) => Err(format!(
            "{text:?}: a limit of 0 takes nothing; say \"unlimited\" for none"
        )),
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(format!(
            "{text:?} is not a number of messages or \"unlimited\""
        )),
    }
}

fn is_unlimited(t: &str) -> bool {
    t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("none")
}

fn size_error(text: &str) -> String {
    format!("{text:?} is not a size (like \"2G\", \"500M\", \"1048576\") or \"unlimited\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_binary_units() {
        assert_eq!(parse_size("2G"), Ok(Some(2 << 30)));
        assert_eq!(parse_size("500 MiB"), Ok(Some(500 << 20)));
        assert_eq!(parse_size("64kb"), Ok(Some(64 << 10)));
        assert_eq!(parse_size("1048576"), Ok(Some(1 << 20)));
        assert_eq!(parse_size("Unlimited"), Ok(None));
        for bad in ["", "G", "2X", "-1", "1.5G", "0", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn counts_read_plainly() {
        assert_eq!(parse_count("100000"), Ok(Some(100_000)));
        assert_eq!(parse_count("none"), Ok(None));
        assert!(parse_count("0").is_err());
        assert!(parse_count("10k").is_err());
    }
}
