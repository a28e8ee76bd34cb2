//! LIST's extended syntax: selection options before the reference, a parenthesised list of
//! patterns, and `RETURN (...)` after them (RFC 5258 3, RFC 5819, RFC 6154 5.3).

use imap_codec::imap_types::mailbox::ListMailbox;
use imap_codec::imap_types::status::StatusDataItemName;

use super::lexer::{Kind, Token, closing, is_word};

/// Patterns one LIST may give.
const MAX_PATTERNS: usize = 64;

/// Which mailboxes a LIST selects (RFC 5258 3.1, RFC 6154 5.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ListSelect {
    pub(crate) subscribed: bool,
    pub(crate) remote: bool,
    pub(crate) recursive_match: bool,
    pub(crate) special_use: bool,
}

/// What a LIST returns about each mailbox (RFC 5258 3.2, RFC 5819, RFC 6154 5.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ListReturn {
    pub(crate) subscribed: bool,
    pub(crate) children: bool,
    pub(crate) special_use: bool,
    pub(crate) status: Option<Vec<StatusDataItemName>>,
    /// STATUS's items include MAILBOXID (RFC 8474 4.2).
    pub(crate) status_mailbox_id: bool,
}

/// An extended LIST's options; the first pattern stays in the decoded command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ListOptions {
    pub(crate) select: ListSelect,
    pub(crate) ret: ListReturn,
    pub(crate) more_patterns: Vec<ListMailbox<'static>>,
}

/// An extended LIST as a basic one (`tag LIST reference pattern`) and its options; `None`
/// when the LIST uses no extended syntax.
pub(super) fn parse(msg: &[u8], toks: &[Token]) -> Result<Option<(Vec<u8>, ListOptions)>, String> {
    let mut opts = ListOptions::default();
    let mut extended = false;
    let mut i = 2;
    if toks.get(i).map(|t| t.kind) == Some(Kind::Open) {
        let close = closing(toks, i).ok_or("LIST's selection options are not closed")?;
        select_options(msg, &toks[i + 1..close], &mut opts)?;
        extended = true;
        i = close + 1;
    }
    let reference = toks
        .get(i)
        .filter(|t| is_string(t))
        .ok_or("LIST needs a reference name")?;
    i += 1;
    let first = toks.get(i).ok_or("LIST needs a mailbox pattern")?;
    let first_pattern;
    if first.kind == Kind::Open {
        let close = closing(toks, i).ok_or("LIST's patterns are not closed")?;
        let pats = &toks[i + 1..close];
        if pats.is_empty() || !pats.iter().all(is_string) {
            return Err("LIST's pattern list holds one or more mailbox patterns".into());
        }
        if pats.len() > MAX_PATTERNS {
            // Each is matched against every mailbox name.
            return Err(format!("LIST takes at most {MAX_PATTERNS} patterns"));
        }
        first_pattern = &pats[0];
        for p in &pats[1..] {
            opts.more_patterns
                .push(super::list_pattern(&msg[p.span.clone()])?);
        }
        extended = true;
        i = close + 1;
    } else if is_string(first) {
        first_pattern = first;
        i += 1;
    } else {
        return Err("LIST needs a mailbox pattern".into());
    }
    if let Some(t) = toks.get(i) {
        if !is_word(msg, t, "RETURN") || toks.get(i + 1).map(|t| t.kind) != Some(Kind::Open) {
            return Err("after LIST's patterns only RETURN (options) may follow".into());
        }
        let close = closing(toks, i + 1).ok_or("LIST's return options are not closed")?;
        if close + 1 != toks.len() {
            return Err("text after LIST's return options".into());
        }
        return_options(msg, &toks[i + 2..close], &mut opts)?;
        extended = true;
    }
    if !extended {
        return Ok(None);
    }
    if opts.select.subscribed {
        // RFC 5258 3.1: SUBSCRIBED selection implies the SUBSCRIBED return option.
        opts.ret.subscribed = true;
    }
    if opts.select.special_use {
        opts.ret.special_use = true;
    }
    let mut basic = msg[toks[0].span.start..toks[1].span.end].to_vec();
    for t in [reference, first_pattern] {
        basic.push(b' ');
        basic.extend_from_slice(&msg[t.span.clone()]);
    }
    basic.extend_from_slice(b"\r\n");
    Ok(Some((basic, opts)))
}

fn is_string(t: &Token) -> bool {
    matches!(t.kind, Kind::Atom | Kind::Quoted | Kind::Literal)
}

fn word(msg: &[u8], t: &Token) -> String {
    String::from_utf8_lossy(&msg[t.span.clone()]).to_ascii_uppercase()
}

fn select_options(msg: &[u8], toks: &[Token], opts: &mut ListOptions) -> Result<(), String> {
    for t in toks {
        let w = word(msg, t);
        match (t.kind, w.as_str()) {
            (Kind::Atom, "SUBSCRIBED") => opts.select.subscribed = true,
            (Kind::Atom, "REMOTE") => opts.select.remote = true,
            (Kind::Atom, "RECURSIVEMATCH") => opts.select.recursive_match = true,
            (Kind::Atom, "SPECIAL-USE") => opts.select.special_use = true,
            _ => return Err(format!("unknown LIST selection option {w}")),
        }
    }
    let s = &opts.select;
    if s.recursive_match && !s.subscribed && !s.special_use {
        // RFC 5258 3.1: RECURSIVEMATCH qualifies another selection option.
        return Err("RECURSIVEMATCH needs another selection option".into());
    }
    Ok(())
}

fn return_options(msg: &[u8], toks: &[Token], opts: &mut ListOptions) -> Result<(), String> {
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        let w = word(msg, t);
        i += 1;
        match (t.kind, w.as_str()) {
            (Kind::Atom, "SUBSCRIBED") => opts.ret.subscribed = true,
            (Kind::Atom, "CHILDREN") => opts.ret.children = true,
            (Kind::Atom, "SPECIAL-USE") => opts.ret.special_use = true,
            (Kind::Atom, "STATUS") => {
                let open = i;
                if toks.get(open).map(|t| t.kind) != Some(Kind::Open) {
                    return Err("STATUS needs a list of status items".into());
                }
                let close = closing(toks, open).ok_or("STATUS's items are not closed")?;
                let (kept, mailbox_id) = super::cut_mailbox_id(msg, &toks[open + 1..close]);
                opts.ret.status_mailbox_id = mailbox_id;
                let items = if kept.is_empty() && mailbox_id {
                    Vec::new()
                } else {
                    super::status_items(&[&b"("[..], &kept, b")"].concat())?
                };
                if opts.ret.status.replace(items).is_some() {
                    return Err("STATUS given twice".into());
                }
                i = close + 1;
            }
            _ => return Err(format!("unknown LIST return option {w}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::lexer::tokens;
    use super::*;

    fn run(line: &str) -> Result<Option<(String, ListOptions)>, String> {
        let toks = tokens(line.as_bytes()).unwrap();
        Ok(parse(line.as_bytes(), &toks)?.map(|(b, o)| (String::from_utf8(b).unwrap(), o)))
    }

    #[test]
    fn a_basic_list_is_left_alone() {
        assert_eq!(run("a LIST \"\" *\r\n").unwrap(), None);
    }

    #[test]
    fn selection_patterns_and_return_options() {
        let (basic, o) = run(
            "a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (INBOX \"Sent*\" {3}\r\nfoo) RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(basic, "a LIST \"\" INBOX\r\n");
        assert!(o.select.subscribed && o.select.recursive_match);
        assert!(o.ret.subscribed && o.ret.children);
        assert_eq!(o.ret.status.as_ref().map(Vec::len), Some(2));
        assert_eq!(o.more_patterns.len(), 2);
        let (_, o) = run("a LIST \"\" % RETURN (SPECIAL-USE)\r\n")
            .unwrap()
            .unwrap();
        assert!(o.ret.special_use && !o.ret.subscribed);
        let (_, o) = run("a LIST () \"\" %\r\n").unwrap().unwrap();
        assert_eq!(o.select, ListSelect::default());
    }

    #[test]
    fn bad_options_are_refused() {
        for line in [
            "a LIST (FOO) \"\" *\r\n",
            "a LIST (RECURSIVEMATCH) \"\" *\r\n",
            "a LIST \"\" * RETURN (BAR)\r\n",
            "a LIST \"\" * RETURN CHILDREN\r\n",
            "a LIST \"\" () \r\n",
            "a LIST \"\" * RETURN (STATUS)\r\n",
            "a LIST \"\" * RETURN (STATUS (BOGUS))\r\n",
            "a LIST \"\" * RETURN (CHILDREN) extra\r\n",
            &format!("a LIST \"\" ({})\r\n", ["x"; 65].join(" ")),
        ] {
            assert!(run(line).is_err(), "{line}");
        }
    }
}
