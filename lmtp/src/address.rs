//! Which account and mailbox a recipient address names: the domain checked against the
//! served ones, the account found by the whole address or by its local part, and a
//! `user+detail` address split so the detail can pick a mailbox.

/// How recipient addresses map to accounts.
#[derive(Clone, Debug, Default)]
pub struct AddressRules {
    /// Domains mail is accepted for (lowercase); empty: any.
    pub domains: Vec<String>,
    /// What separates a local part from its detail (`+` in `alice+lists@`); `None`: no details.
    pub detail_delimiter: Option<char>,
}

/// Why an address names no account here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotHere {
    /// The domain is not one this server takes mail for.
    Domain,
    /// The address is not one an account could have.
    Malformed,
}

/// The account names to try for an address, in order, each with the detail it leaves.
pub fn candidates(
    rules: &AddressRules,
    address: &str,
) -> Result<Vec<(String, Option<String>)>, NotHere> {
    let (local, domain) = match address.rsplit_once('@') {
        Some((l, d)) => (l, Some(d)),
        None => (address, None),
    };
    if local.is_empty() || domain.is_some_and(str::is_empty) {
        return Err(NotHere::Malformed);
    }
    if let Some(d) = domain
        && !rules.domains.is_empty()
        && !rules.domains.iter().any(|s| s.eq_ignore_ascii_case(d))
    {
        return Err(NotHere::Domain);
    }
    if domain.is_none() && !rules.domains.is_empty() {
        return Err(NotHere::Domain);
    }
    let with_domain = |l: &str| domain.map(|d| format!("{l}@{}", d.to_ascii_lowercase()));
    let mut out = Vec::new();
    let mut push = |name: Option<String>, detail: Option<&str>| {
        if let Some(n) = name
            && !out.iter().any(|(o, _)| *o == n)
        {
            out.push((n, detail.map(str::to_string)));
        }
    };
    // An account named by the whole address wins over one named by its local part.
    push(with_domain(local), None);
    push(Some(local.to_string()), None);
    if let Some(delim) = rules.detail_delimiter
        && let Some((base, detail)) = local.split_once(delim)
        && !base.is_empty()
    {
        let detail = Some(detail).filter(|d| !d.is_empty());
        push(with_domain(base), detail);
        push(Some(base.to_string()), detail);
    }
    Ok(out)
}

/// The trace headers delivery adds in front of the message: `Return-Path` (the envelope
/// sender), and `Delivered-To` when the transaction has one recipient (with more, the copies
/// would differ and could no longer be parsed and stored once).
pub fn trace_headers(from: &str, delivered_to: Option<&str>) -> String {
    let mut out = format!("Return-Path: <{}>\r\n", clean(from));
    if let Some(to) = delivered_to {
        out.push_str(&format!("Delivered-To: {}\r\n", clean(to)));
    }
    out
}

/// An address as it may appear in a header: no line breaks, no control characters.
fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(domains: &[&str]) -> AddressRules {
        AddressRules {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            detail_delimiter: Some('+'),
        }
    }

    fn names(r: &AddressRules, a: &str) -> Vec<(String, Option<String>)> {
        candidates(r, a).unwrap()
    }

    #[test]
    fn the_whole_address_then_the_local_part_then_without_the_detail() {
        let r = rules(&[]);
        assert_eq!(
            names(&r, "Bob+Lists@Example.org"),
            [
                ("Bob+Lists@example.org".into(), None),
                ("Bob+Lists".into(), None),
                ("Bob@example.org".into(), Some("Lists".into())),
                ("Bob".into(), Some("Lists".into())),
            ]
        );
        assert_eq!(names(&r, "alice"), [("alice".to_string(), None::<String>)]);
        // An empty detail is none; a leading delimiter is part of the name.
        assert_eq!(names(&r, "a+@x")[2], ("a@x".into(), None));
        assert_eq!(names(&r, "+a@x").len(), 2);
    }

    #[test]
    fn domains_not_served_and_malformed_addresses_are_refused() {
        let r = rules(&["example.org"]);
        assert_eq!(candidates(&r, "a@other.org"), Err(NotHere::Domain));
        assert_eq!(candidates(&r, "a"), Err(NotHere::Domain));
        assert!(candidates(&r, "a@EXAMPLE.org").is_ok());
        assert_eq!(candidates(&r, "@example.org"), Err(NotHere::Malformed));
        assert_eq!(candidates(&r, "a@"), Err(NotHere::Malformed));
    }

    #[test]
    fn trace_headers_carry_no_line_breaks() {
        assert_eq!(
            trace_headers("a@b\r\nX-Evil: 1", Some("c@d")),
            "Return-Path: <a@bX-Evil: 1>\r\nDelivered-To: c@d\r\n"
        );
        assert_eq!(trace_headers("", None), "Return-Path: <>\r\n");
    }
}
