//! Command syntax imap-codec does not decode: SEARCH's `RETURN (...)` (ESEARCH, RFC 4731;
//! SAVE, RFC 5182; PARTIAL, RFC 9394), the `$` marker of RFC 5182, LIST's selection and return
//! options and pattern lists (RFC 5258, 5819, 6154), CREATE's `(USE (...))` (RFC 6154), the
//! FETCH items SAVEDATE (RFC 8514), PREVIEW (RFC 8970), EMAILID and THREADID (RFC 8474), the
//! SAVEDATE, EMAILID and THREADID search keys, and STATUS MAILBOXID (RFC 8474).
//!
//! Each clause is cut out of the command and what is left is decoded by imap-codec as before;
//! the clause comes back, typed, as [`Extras`]. A `$` or a search key imap-codec lacks is
//! replaced by the set of messages it names, which the session works out ([`Resolve`]); apart
//! from that, this module only recognises syntax.

mod lexer;
mod list;

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::mailbox::ListMailbox;
use imap_codec::imap_types::status::StatusDataItemName;
use lexer::{Kind, Token, closing, is_word, tokens};

pub(crate) use list::ListOptions;

/// What a command said beyond what imap-codec decoded.
#[derive(Debug, Default)]
pub(crate) struct Extras {
    /// SEARCH's result options (ESEARCH answers).
    pub(crate) search: Option<SearchReturn>,
    /// LIST-EXTENDED's options and further patterns.
    pub(crate) list: Option<ListOptions>,
    /// CREATE's special-use attributes, as sent (`\Drafts`).
    pub(crate) create_use: Vec<String>,
    /// The command's message set was `$` and the saved result holds none of the mailbox's
    /// messages: it acts on nothing (RFC 5182 2.1).
    pub(crate) saved_empty: bool,
    /// FETCH items imap-codec lacks, answered after the others.
    pub(crate) fetch: Vec<FetchItem>,
    /// Every FETCH item was one of those: the decoded command carries a stand-in `UID`.
    pub(crate) fetch_stand_in: bool,
    /// STATUS asked for MAILBOXID (RFC 8474 4.2).
    pub(crate) status_mailbox_id: bool,
    /// MAILBOXID was STATUS's only item: the decoded command carries a stand-in `MESSAGES`.
    pub(crate) status_stand_in: bool,
    /// APPEND's message, taken out of the decoded command (which carries an empty one).
    pub(crate) literal: Option<Detached>,
}

/// An APPEND message detached from its command.
#[derive(Debug)]
pub(crate) enum Detached {
    /// Where it lies in the received command, until the command's buffer is handed over.
    Range(std::ops::Range<usize>),
    /// Its bytes.
    Bytes(bytes::Bytes),
}

/// A FETCH item imap-codec does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FetchItem {
    /// RFC 8514.
    SaveDate,
    /// RFC 8970 (with or without `(LAZY)`: the preview is always at hand).
    Preview,
    /// RFC 8474.
    EmailId,
    /// RFC 8474.
    ThreadId,
}

/// A search key imap-codec does not decode, which the session turns into the messages it
/// matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SearchKeyExt {
    /// SAVEDBEFORE, SAVEDON, SAVEDSINCE (RFC 8514 4.2).
    SaveDate(Day, chrono::NaiveDate),
    /// EMAILID (RFC 8474 6); `None` for an id Strata never gives out, which matches nothing.
    EmailId(Option<[u8; 16]>),
    /// THREADID (RFC 8474 6).
    ThreadId(Option<[u8; 16]>),
}

/// How a date key compares a message's day with its date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Day {
    Before,
    On,
    Since,
}

/// What rewriting needs from the session: the selected mailbox's saved result and the messages
/// a key imap-codec lacks matches, each as a set; `None` when there is no such message.
pub(crate) trait Resolve {
    /// The saved result: UIDs for a UID command, else sequence numbers.
    fn saved(&self, uid: bool) -> Option<String>;
    /// The UIDs of the messages `key` matches.
    fn matching(&self, key: SearchKeyExt) -> Option<String>;
}

/// No mailbox is selected: nothing is saved and nothing matches.
pub(crate) struct NoMailbox;

impl Resolve for NoMailbox {
    fn saved(&self, _uid: bool) -> Option<String> {
        None
    }

    fn matching(&self, _key: SearchKeyExt) -> Option<String> {
        None
    }
}

/// SEARCH `RETURN (...)` (RFC 4731 3.1, RFC 5182 2.1, RFC 9394 3.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SearchReturn {
    pub(crate) min: bool,
    pub(crate) max: bool,
    pub(crate) all: bool,
    pub(crate) count: bool,
    pub(crate) save: bool,
    pub(crate) partial: Option<Partial>,
}

/// A PARTIAL range: the `a`-th to `b`-th result (1-based, `a <= b`), counted from the first
/// result, or from the last when `from_end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Partial {
    pub(crate) from_end: bool,
    pub(crate) a: u32,
    pub(crate) b: u32,
}

impl std::fmt::Display for Partial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = if self.from_end { "-" } else { "" };
        write!(f, "{m}{}:{m}{}", self.a, self.b)
    }
}

/// Extension syntax that is there but wrong: a BAD with this code.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub(crate) code: &'static str,
    pub(crate) text: String,
}

impl From<String> for SyntaxError {
    fn from(text: String) -> Self {
        SyntaxError {
            code: "PARSE",
            text,
        }
    }
}

/// A command with the extension syntax taken out.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) command: Command<'static>,
    pub(crate) extras: Extras,
}

/// Recognises extension syntax in a complete command. `Ok(None)`: there is none, decode the
/// command as it is. `Err`: the syntax is there but wrong (a BAD for the client).
pub(crate) fn parse(msg: &[u8], session: &dyn Resolve) -> Result<Option<Parsed>, SyntaxError> {
    let Some(toks) = tokens(msg) else {
        return Ok(None);
    };
    // The saved set is written once per command, however many `$` it has.
    let by_kind = std::cell::RefCell::new([None, None]);
    let memo = |uid: bool| -> Option<String> {
        by_kind.borrow_mut()[usize::from(uid)]
            .get_or_insert_with(|| session.saved(uid))
            .clone()
    };
    let saved: Saved<'_> = &memo;
    let matching = |key| session.matching(key);
    if toks.len() < 2 || toks[..2].iter().any(|t| t.kind != Kind::Atom) {
        return Ok(None);
    }
    let uid = is_word(msg, &toks[1], "UID");
    let at = usize::from(uid) + 1;
    let Some(name) = toks.get(at) else {
        return Ok(None);
    };
    let name = String::from_utf8_lossy(&msg[name.span.clone()]).to_ascii_uppercase();
    let mut edits = Edits::default();
    let mut extras = Extras::default();
    match (uid, name.as_str()) {
        (_, "SEARCH") => {
            let keys = Keys {
                saved,
                matching: &matching,
            };
            search(msg, &toks, at + 1, uid, keys, &mut edits, &mut extras)?
        }
        (_, "FETCH" | "STORE" | "COPY" | "MOVE") | (true, "EXPUNGE") => {
            if name == "FETCH" {
                fetch_items(msg, &toks, at + 2, &mut edits, &mut extras)?;
            }
            if let Some(set) = toks.get(at + 1).filter(|t| is_word(msg, t, "$")) {
                match saved(uid) {
                    Some(s) => edits.replace(set.span.clone(), s.into_bytes()),
                    None => {
                        // Any valid set: the command is answered without looking at it.
                        extras.saved_empty = true;
                        edits.replace(set.span.clone(), b"1".to_vec());
                    }
                }
            }
        }
        (false, "LIST") => {
            let Some((bytes, opts)) = list::parse(msg, &toks)? else {
                return Ok(None);
            };
            extras.list = Some(opts);
            return Ok(Some(Parsed {
                command: decode(&bytes)?,
                extras,
            }));
        }
        (false, "CREATE") => create(msg, &toks, &mut edits, &mut extras)?,
        (false, "STATUS") => {
            let open = at + 2;
            if toks.get(open).map(|t| t.kind) == Some(Kind::Open) {
                let close = closing(&toks, open)
                    .ok_or_else(|| "STATUS's items are not closed".to_string())?;
                let (kept, found) = cut_mailbox_id(msg, &toks[open + 1..close]);
                if found {
                    extras.status_mailbox_id = true;
                    extras.status_stand_in = kept.is_empty();
                    let list = if kept.is_empty() {
                        b"(MESSAGES)".to_vec()
                    } else {
                        [&b"("[..], &kept, b")"].concat()
                    };
                    edits.replace(toks[open].span.start..toks[close].span.end, list);
                }
            }
        }
        _ => {}
    }
    if edits.is_empty() {
        return Ok(None);
    }
    if edits.added() > MAX_EXPANSION {
        return Err(SyntaxError {
            code: "LIMIT",
            text: "the saved result is used too often in one command".into(),
        });
    }
    Ok(Some(Parsed {
        command: decode(&edits.apply(msg))?,
        extras,
    }))
}

/// Decodes a command with imap-codec.
fn decode(bytes: &[u8]) -> Result<Command<'static>, String> {
    match CommandCodec::default().decode(bytes) {
        Ok(([], cmd)) => Ok(cmd.into_static()),
        _ => Err("syntax error in command".into()),
    }
}

/// STATUS items without MAILBOXID, which imap-codec does not know: the others, space-separated,
/// and whether it was there.
fn cut_mailbox_id(msg: &[u8], items: &[Token]) -> (Vec<u8>, bool) {
    let mut found = false;
    let mut kept: Vec<&[u8]> = Vec::new();
    for t in items {
        if is_word(msg, t, "MAILBOXID") {
            found = true;
        } else {
            kept.push(&msg[t.span.clone()]);
        }
    }
    (kept.join(&b' '), found)
}

/// Decodes the STATUS items of `(MESSAGES UNSEEN ...)`, the bytes of a parenthesised list.
fn status_items(list: &[u8]) -> Result<Vec<StatusDataItemName>, String> {
    let mut cmd = b"s STATUS INBOX ".to_vec();
    cmd.extend_from_slice(list);
    cmd.extend_from_slice(b"\r\n");
    match decode(&cmd)?.body {
        CommandBody::Status { item_names, .. } => Ok(item_names.into_owned()),
        _ => Err("syntax error in STATUS items".into()),
    }
}

/// Decodes one LIST pattern token (atom, string or literal).
fn list_pattern(tok: &[u8]) -> Result<ListMailbox<'static>, String> {
    let mut cmd = b"p LIST \"\" ".to_vec();
    cmd.extend_from_slice(tok);
    cmd.extend_from_slice(b"\r\n");
    match decode(&cmd)?.body {
        CommandBody::List {
            mailbox_wildcard, ..
        } => Ok(mailbox_wildcard),
        _ => Err("syntax error in LIST pattern".into()),
    }
}

/// How many bytes `$` may add to one command: a saved result of 100,000 scattered messages
/// is about 600 KB as a set.
const MAX_EXPANSION: usize = 4 << 20;

/// Replacements of spans of a message, applied together.
#[derive(Default)]
struct Edits(Vec<(std::ops::Range<usize>, Vec<u8>)>);

impl Edits {
    fn replace(&mut self, span: std::ops::Range<usize>, with: Vec<u8>) {
        self.0.push((span, with));
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes the replacements add.
    fn added(&self) -> usize {
        self.0.iter().map(|(_, with)| with.len()).sum()
    }

    fn apply(mut self, msg: &[u8]) -> Vec<u8> {
        self.0.sort_by_key(|(r, _)| r.start);
        let mut out = Vec::with_capacity(msg.len());
        let mut at = 0;
        for (r, with) in self.0 {
            out.extend_from_slice(&msg[at..r.start]);
            out.extend_from_slice(&with);
            at = r.end;
        }
        out.extend_from_slice(&msg[at..]);
        out
    }
}

/// The saved result as a set for the command at hand (see [`Resolve::saved`]).
type Saved<'a> = &'a dyn Fn(bool) -> Option<String>;

/// How SEARCH's keys that imap-codec lacks become sets.
struct Keys<'a> {
    saved: Saved<'a>,
    matching: &'a dyn Fn(SearchKeyExt) -> Option<String>,
}

/// SEARCH: its RETURN clause, and `$` and the SAVEDATE keys where a search key may stand.
fn search(
    msg: &[u8],
    toks: &[Token],
    mut at: usize,
    uid: bool,
    keys: Keys<'_>,
    edits: &mut Edits,
    extras: &mut Extras,
) -> Result<(), String> {
    let saved = keys.saved;
    if toks.get(at).is_some_and(|t| is_word(msg, t, "RETURN")) {
        if toks.get(at + 1).map(|t| t.kind) != Some(Kind::Open) {
            return Err("RETURN needs a parenthesised list of result options".into());
        }
        let close = closing(toks, at + 1).ok_or("RETURN's list is not closed")?;
        let Some(next) = toks.get(close + 1) else {
            return Err("SEARCH needs criteria".into());
        };
        extras.search = Some(return_options(msg, &toks[at + 2..close])?);
        edits.replace(toks[at].span.start..next.span.start, Vec::new());
        at = close + 1;
    }
    if toks.get(at).is_some_and(|t| is_word(msg, t, "CHARSET")) {
        at += 2;
    }
    // Walk the keys, skipping their arguments, so that a `$` is replaced only where it is a
    // key (or UID's set), never where it is a string to search for.
    let mut skip = 0usize;
    let mut i = at;
    while i < toks.len() {
        let t = &toks[i];
        i += 1;
        if skip > 0 {
            skip -= 1;
            continue;
        }
        if t.kind != Kind::Atom {
            continue;
        }
        let word = msg[t.span.clone()].to_ascii_uppercase();
        match word.as_slice() {
            b"$" => edits.replace(t.span.clone(), saved_key(saved(uid))),
            b"UID" => {
                if let Some(set) = toks.get(i).filter(|s| is_word(msg, s, "$")) {
                    edits.replace(t.span.start..set.span.end, saved_key(saved(true)));
                }
                skip = 1;
            }
            b"MODSEQ" => {
                // MODSEQ ["entry" type] value (RFC 7162 3.1.5).
                skip = if toks.get(i).is_some_and(|n| n.kind == Kind::Quoted) {
                    3
                } else {
                    1
                };
            }
            b"HEADER" => skip = 2,
            b"SAVEDATESUPPORTED" => edits.replace(t.span.clone(), b"ALL".to_vec()),
            b"SAVEDBEFORE" | b"SAVEDON" | b"SAVEDSINCE" => {
                let arg = toks.get(i).ok_or("a SAVEDATE key needs a date")?;
                let date = search_date(&msg[arg.span.clone()])
                    .ok_or("a SAVEDATE key's date is d-Mon-yyyy")?;
                let day = match word.as_slice() {
                    b"SAVEDBEFORE" => Day::Before,
                    b"SAVEDON" => Day::On,
                    _ => Day::Since,
                };
                let key = SearchKeyExt::SaveDate(day, date);
                let set = (keys.matching)(key).map(|s| format!("UID {s}"));
                let with = set.unwrap_or_else(|| "NOT ALL".into()).into_bytes();
                edits.replace(t.span.start..arg.span.end, with);
                skip = 1;
            }
            b"EMAILID" | b"THREADID" => {
                let arg = toks
                    .get(i)
                    .ok_or("EMAILID and THREADID need an object id")?;
                let raw = &msg[arg.span.clone()];
                let key = if word.as_slice() == b"EMAILID" {
                    SearchKeyExt::EmailId(crate::objectid::parse(b'M', raw))
                } else {
                    SearchKeyExt::ThreadId(crate::objectid::parse(b'T', raw))
                };
                let set = (keys.matching)(key).map(|s| format!("UID {s}"));
                let with = set.unwrap_or_else(|| "NOT ALL".into()).into_bytes();
                edits.replace(t.span.start..arg.span.end, with);
                skip = 1;
            }
            b"BCC" | b"BODY" | b"CC" | b"FROM" | b"SUBJECT" | b"TEXT" | b"TO" | b"KEYWORD"
            | b"UNKEYWORD" | b"BEFORE" | b"ON" | b"SINCE" | b"SENTBEFORE" | b"SENTON"
            | b"SENTSINCE" | b"LARGER" | b"SMALLER" | b"YOUNGER" | b"OLDER" => skip = 1,
            _ => {}
        }
    }
    Ok(())
}

/// A search key's date (RFC 3501 `date`: `d-Mon-yyyy`, quoted or not).
fn search_date(s: &[u8]) -> Option<chrono::NaiveDate> {
    let s = std::str::from_utf8(s).ok()?;
    let s = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s);
    chrono::NaiveDate::parse_from_str(s, "%d-%b-%Y").ok()
}

/// FETCH's items: SAVEDATE and PREVIEW are cut out of the list (or the single item) and
/// returned in `extras`; a list left empty becomes a stand-in `UID`.
fn fetch_items(
    msg: &[u8],
    toks: &[Token],
    at: usize,
    edits: &mut Edits,
    extras: &mut Extras,
) -> Result<(), String> {
    let Some(first) = toks.get(at) else {
        return Ok(());
    };
    let ext = |t: &Token| -> Option<FetchItem> {
        if is_word(msg, t, "SAVEDATE") {
            Some(FetchItem::SaveDate)
        } else if is_word(msg, t, "PREVIEW") {
            Some(FetchItem::Preview)
        } else if is_word(msg, t, "EMAILID") {
            Some(FetchItem::EmailId)
        } else if is_word(msg, t, "THREADID") {
            Some(FetchItem::ThreadId)
        } else {
            None
        }
    };
    // PREVIEW's modifiers (RFC 8970 3), LAZY the only one: the index of the group's `)`.
    let lazy = |open: usize| -> Result<Option<usize>, String> {
        if toks.get(open).map(|t| t.kind) != Some(Kind::Open) {
            return Ok(None);
        }
        let end = closing(toks, open).ok_or("FETCH's item list is not closed")?;
        let mods = &toks[open + 1..end];
        Ok((!mods.is_empty() && mods.iter().all(|m| is_word(msg, m, "LAZY"))).then_some(end))
    };
    if first.kind == Kind::Atom {
        if let Some(item) = ext(first) {
            extras.fetch.push(item);
            extras.fetch_stand_in = true;
            // A lone PREVIEW may carry its (LAZY); any other group is FETCH's modifiers.
            let end = match item {
                FetchItem::Preview => lazy(at + 1)?.map_or(first.span.end, |e| toks[e].span.end),
                _ => first.span.end,
            };
            edits.replace(first.span.start..end, b"UID".to_vec());
        }
        return Ok(());
    }
    if first.kind != Kind::Open {
        return Ok(());
    }
    let close = closing(toks, at).ok_or("FETCH's item list is not closed")?;
    // The items as they will be sent on: spans of the message, ext items left out.
    let mut kept: Vec<std::ops::Range<usize>> = Vec::new();
    let mut i = at + 1;
    while i < close {
        let t = &toks[i];
        let group_end = |j: usize| -> Result<usize, String> {
            Ok(closing(toks, j).ok_or("FETCH's item list is not closed")?)
        };
        match ext(t) {
            Some(item) => {
                extras.fetch.push(item);
                i += 1;
                if item == FetchItem::Preview && toks[i].kind == Kind::Open {
                    let end = lazy(i)?.ok_or("PREVIEW's only modifier is LAZY")?;
                    i = end + 1;
                }
            }
            None if t.kind == Kind::Open => {
                let end = group_end(i)?;
                kept.push(t.span.start..toks[end].span.end);
                i = end + 1;
            }
            None => {
                kept.push(t.span.clone());
                i += 1;
            }
        }
    }
    if extras.fetch.is_empty() {
        return Ok(());
    }
    let inner = if kept.is_empty() {
        extras.fetch_stand_in = true;
        b"UID".to_vec()
    } else {
        let parts: Vec<&[u8]> = kept.iter().map(|r| &msg[r.clone()]).collect();
        parts.join(&b' ')
    };
    let mut list = b"(".to_vec();
    list.extend_from_slice(&inner);
    list.push(b')');
    edits.replace(first.span.start..toks[close].span.end, list);
    Ok(())
}

/// The search key that stands for the saved result.
fn saved_key(set: Option<String>) -> Vec<u8> {
    match set {
        // By UID whatever the command: the set is the client's own result.
        Some(uids) => format!("UID {uids}").into_bytes(),
        None => b"NOT ALL".to_vec(),
    }
}

/// The options inside `RETURN (...)`.
fn return_options(msg: &[u8], toks: &[Token]) -> Result<SearchReturn, String> {
    let mut ret = SearchReturn::default();
    let mut it = toks.iter();
    while let Some(t) = it.next() {
        let word = String::from_utf8_lossy(&msg[t.span.clone()]).to_ascii_uppercase();
        match (t.kind, word.as_str()) {
            (Kind::Atom, "MIN") => ret.min = true,
            (Kind::Atom, "MAX") => ret.max = true,
            (Kind::Atom, "ALL") => ret.all = true,
            (Kind::Atom, "COUNT") => ret.count = true,
            (Kind::Atom, "SAVE") => ret.save = true,
            (Kind::Atom, "PARTIAL") => {
                let range = it.next().ok_or("PARTIAL needs a range")?;
                let p = partial(&msg[range.span.clone()])
                    .ok_or("PARTIAL's range is n:m or -n:-m with non-zero numbers")?;
                if ret.partial.replace(p).is_some() {
                    return Err("PARTIAL given twice".into());
                }
            }
            _ => return Err(format!("unknown SEARCH result option {word}")),
        }
    }
    if !(ret.min || ret.max || ret.count || ret.save || ret.partial.is_some()) {
        // RETURN () means ALL (RFC 4731 3.1).
        ret.all = true;
    }
    if ret.all && ret.partial.is_some() {
        // RFC 9394 3.1: they contradict each other.
        return Err("PARTIAL and ALL cannot be combined".into());
    }
    Ok(ret)
}

/// `n:m` or `-n:-m` (RFC 9394's partial-range).
fn partial(s: &[u8]) -> Option<Partial> {
    let s = std::str::from_utf8(s).ok()?;
    let (a, b) = s.split_once(':')?;
    let from_end = a.starts_with('-');
    if from_end != b.starts_with('-') {
        return None;
    }
    let num = |x: &str| -> Option<u32> {
        let x = x.strip_prefix('-').unwrap_or(x);
        if x.is_empty() || !x.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        x.parse().ok().filter(|n| *n > 0)
    };
    let (a, b) = (num(a)?, num(b)?);
    Some(Partial {
        from_end,
        a: a.min(b),
        b: a.max(b),
    })
}

/// CREATE name (USE (attrs)) (RFC 6154 3).
fn create(
    msg: &[u8],
    toks: &[Token],
    edits: &mut Edits,
    extras: &mut Extras,
) -> Result<(), String> {
    let (Some(name), Some(open)) = (toks.get(2), toks.get(3)) else {
        return Ok(());
    };
    if open.kind != Kind::Open {
        return Ok(());
    }
    let close = closing(toks, 3).ok_or("CREATE's parameters are not closed")?;
    if close + 1 != toks.len() {
        return Err("text after CREATE's parameters".into());
    }
    let inner = &toks[4..close];
    let ok = inner.len() >= 3
        && is_word(msg, &inner[0], "USE")
        && inner[1].kind == Kind::Open
        && closing(toks, 5) == Some(close - 1);
    if !ok {
        return Err("the only CREATE parameter is USE (attributes)".into());
    }
    for t in &inner[2..inner.len() - 1] {
        if t.kind != Kind::Atom || msg[t.span.start] != b'\\' {
            return Err("USE takes special-use attributes such as \\Drafts".into());
        }
        extras
            .create_use
            .push(String::from_utf8_lossy(&msg[t.span.clone()]).into_owned());
    }
    edits.replace(name.span.end..toks[close].span.end, Vec::new());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session whose saved result (and every SAVEDATE key's match) is one fixed set.
    struct Fixed(Option<String>);

    impl Resolve for Fixed {
        fn saved(&self, _uid: bool) -> Option<String> {
            self.0.clone()
        }

        fn matching(&self, _key: SearchKeyExt) -> Option<String> {
            self.0.clone()
        }
    }

    fn run(line: &str, saved: Option<&str>) -> Result<Option<(String, Extras)>, String> {
        let f = Fixed(saved.map(str::to_string));
        let parsed = parse(line.as_bytes(), &f).map_err(|e| e.text)?;
        Ok(parsed.map(|p| (format!("{:?}", p.command.body), p.extras)))
    }

    #[test]
    fn dollar_cannot_blow_a_command_up() {
        let set: String = (1..200_000).step_by(2).map(|n| format!("{n},")).collect();
        let f = Fixed(Some(set.trim_end_matches(',').to_string()));
        let line = format!("a SEARCH {}\r\n", ["$"; 100].join(" "));
        let e = parse(line.as_bytes(), &f).unwrap_err();
        assert_eq!(e.code, "LIMIT");
    }

    #[test]
    fn savedate_and_preview_fetch_items() {
        let (body, x) = run(
            "a FETCH 1:* (FLAGS SAVEDATE PREVIEW (LAZY) BODY.PEEK[HEADER.FIELDS (A B)])\r\n",
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(x.fetch, vec![FetchItem::SaveDate, FetchItem::Preview]);
        assert!(
            !x.fetch_stand_in && body.contains("Flags") && body.contains("HeaderFields"),
            "{body}"
        );
        let (body, x) = run("a UID FETCH 1 PREVIEW (CHANGEDSINCE 4)\r\n", None)
            .unwrap()
            .unwrap();
        assert!(
            x.fetch_stand_in && body.contains("Uid") && body.contains("ChangedSince"),
            "{body}"
        );
        let (_, x) = run("a FETCH 1 (savedate)\r\n", None).unwrap().unwrap();
        assert!(x.fetch_stand_in && x.fetch == vec![FetchItem::SaveDate]);
        assert!(run("a FETCH 1 (PREVIEW (FAST))\r\n", None).is_err());
        let (body, x) = run("a FETCH 1 PREVIEW (LAZY)\r\n", None).unwrap().unwrap();
        assert!(x.fetch_stand_in && !body.contains("Lazy"), "{body}");
        assert!(run("a FETCH 1 (FLAGS UID)\r\n", None).unwrap().is_none());
    }

    #[test]
    fn savedate_search_keys() {
        let (body, _) = run(
            "a SEARCH OR SAVEDBEFORE 1-Feb-2020 SAVEDSINCE \"2-Mar-2021\"\r\n",
            Some("4:6"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(body.matches("Uid").count(), 2, "{body}");
        let (body, _) = run("a SEARCH SAVEDON 1-Feb-2020 SAVEDATESUPPORTED\r\n", None)
            .unwrap()
            .unwrap();
        assert!(body.contains("Not(All)") && body.contains("All"), "{body}");
        assert!(run("a SEARCH SAVEDON 2020-02-01\r\n", None).is_err());
        assert!(run("a SEARCH SAVEDON\r\n", None).is_err());
    }

    #[test]
    fn search_return_options_are_cut_out() {
        let (body, x) = run("a UID SEARCH RETURN (MIN COUNT) UNSEEN\r\n", None)
            .unwrap()
            .unwrap();
        assert!(
            body.contains("Unseen") && body.contains("uid: true"),
            "{body}"
        );
        let r = x.search.unwrap();
        assert!(r.min && r.count && !r.all && !r.max);
        let (_, x) = run("a SEARCH RETURN () ALL\r\n", None).unwrap().unwrap();
        assert!(x.search.unwrap().all);
        let (_, x) = run("a SEARCH RETURN (PARTIAL -1:-10 COUNT) ALL\r\n", None)
            .unwrap()
            .unwrap();
        let p = x.search.unwrap().partial.unwrap();
        assert_eq!(
            (p.from_end, p.a, p.b, p.to_string()),
            (true, 1, 10, "-1:-10".into())
        );
    }

    #[test]
    fn bad_return_options_are_refused() {
        for line in [
            "a SEARCH RETURN (FOO) ALL\r\n",
            "a SEARCH RETURN (MIN ALL\r\n",
            "a SEARCH RETURN (MIN)\r\n",
            "a SEARCH RETURN (PARTIAL 0:5) ALL\r\n",
            "a SEARCH RETURN (PARTIAL 1:-5) ALL\r\n",
            "a SEARCH RETURN (PARTIAL 1:5 ALL) ALL\r\n",
            "a SEARCH RETURN MIN ALL\r\n",
        ] {
            assert!(run(line, None).is_err(), "{line}");
        }
    }

    #[test]
    fn dollar_becomes_the_saved_set_only_where_a_key_stands() {
        let (body, _) = run("a SEARCH $ SUBJECT $ KEYWORD $\r\n", Some("4:7"))
            .unwrap()
            .unwrap();
        assert!(body.contains("Uid"), "{body}");
        assert!(body.contains("Subject"), "{body}");
        let (body, _) = run("a SEARCH OR UID $ SEEN\r\n", None).unwrap().unwrap();
        assert!(body.contains("Not(All)"), "{body}");
        assert!(run("a SEARCH SUBJECT $\r\n", Some("1")).unwrap().is_none());
    }

    #[test]
    fn dollar_as_a_message_set() {
        let (body, x) = run("a UID FETCH $ FLAGS\r\n", Some("3,9"))
            .unwrap()
            .unwrap();
        assert!(body.contains("3") && !x.saved_empty, "{body}");
        let (_, x) = run("a COPY $ Trash\r\n", None).unwrap().unwrap();
        assert!(x.saved_empty);
        assert!(
            run("a STORE 1 +FLAGS ($)\r\n", Some("1"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn create_use() {
        let (body, x) = run("a CREATE Sent (USE (\\Sent))\r\n", None)
            .unwrap()
            .unwrap();
        assert!(body.contains("Create"), "{body}");
        assert_eq!(x.create_use, vec!["\\Sent".to_string()]);
        assert!(run("a CREATE x (FOO (\\Sent))\r\n", None).is_err());
        assert!(run("a CREATE x (USE (Sent))\r\n", None).is_err());
        assert!(run("a CREATE x\r\n", None).unwrap().is_none());
    }
}
