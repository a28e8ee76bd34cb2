//! SEARCH and UID SEARCH (RFC 3501 6.4.4): every key, nested OR/NOT/AND, sequence and UID sets,
//! dates, sizes, flags, headers and text. Flags, sizes, dates and UIDs come from the shared
//! view; header keys from the fields the index keeps; BODY and TEXT read bodies (concurrently,
//! in order) only when the criteria need them. The text and header strings of the top-level
//! conjunction first narrow the messages compared to the full-text index's candidates (and
//! those it does not hold); the comparison itself is the same either way.

use std::collections::HashSet;

use bytes::Bytes;
use chrono::NaiveDate;
use futures::StreamExt;
use imap_codec::imap_types::core::Charset;
use imap_codec::imap_types::search::SearchKey;
use strata_mailstore::mime::search_text;
use strata_mailstore::model::{
    ContentRecord, Guid, MimePart, Modseq, Parts, SystemFlags, Timestamp, Uid, ViewEntry,
};
use strata_mailstore::searched::{
    ADDRESS_FIELDS, contains_ci, field_values, searched_slices, searched_span, searched_text,
    strip_breaks, text_parts,
};
use strata_mailstore::{
    BodyRead, SYNCED_HEADERS, StoreError, TextScope, UserStore, decode_header, parse_date,
};

use super::{InMailbox, R};
use crate::grammar::SearchReturn;
use crate::respond::Responder;
use crate::selected::{Selected, ranges};
use crate::session::Step;
use crate::uidset::UidSet;

/// What evaluating the criteria needs beyond the view.
#[derive(Default, Clone, Copy)]
struct Needs {
    content: bool,
    body: bool,
    /// A MODSEQ key: the answer ends with the highest MODSEQ found (RFC 7162 3.1.5).
    modseq: bool,
    /// RECENT, NEW or OLD, which IMAP4rev2 no longer has (RFC 9051 Appendix E).
    recent: bool,
}

fn needs(k: &SearchKey<'_>, n: &mut Needs) {
    use SearchKey as K;
    match k {
        K::And(ks) => ks.as_ref().iter().for_each(|k| needs(k, n)),
        K::Not(k) => needs(k, n),
        K::Or(a, b) => {
            needs(a, n);
            needs(b, n);
        }
        K::Bcc(_) | K::Cc(_) | K::From(_) | K::To(_) | K::Subject(_) => n.content = true,
        K::SentBefore(_) | K::SentOn(_) | K::SentSince(_) => n.content = true,
        K::Header(name, _) => {
            n.content = true;
            let name = String::from_utf8_lossy(name.as_ref()).to_string();
            if !SYNCED_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(&name)) {
                n.body = true;
            }
        }
        K::Body(_) | K::Text(_) => {
            n.content = true;
            n.body = true;
        }
        K::ModSequence { .. } => n.modseq = true,
        K::Recent | K::New | K::Old => n.recent = true,
        _ => {}
    }
}

/// One message as the criteria see it.
struct Candidate<'a> {
    seq: u32,
    entry: &'a ViewEntry,
    recent: bool,
    content: Option<&'a ContentRecord>,
    /// The message's header block, when the criteria need bytes.
    header: Option<&'a [u8]>,
    /// The body of each text part (attachments are never read), with the part.
    parts: &'a [bytes::Bytes],
    text_parts: Vec<&'a MimePart>,
    /// Decoded text of the text parts, computed on first use.
    text: std::cell::OnceCell<String>,
}

fn contains_text(hay: &str, needle: &[u8]) -> bool {
    let needle = String::from_utf8_lossy(needle).to_lowercase();
    hay.to_lowercase().contains(&needle)
}

impl Candidate<'_> {
    /// The values of a header field: from the index when it keeps that field, else from the
    /// message's header block.
    fn header_values(&self, name: &str) -> Vec<Vec<u8>> {
        let Some(c) = self.content else {
            return Vec::new();
        };
        if SYNCED_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            return c
                .parsed
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value.clone())
                .collect();
        }
        self.header
            .map(|header| field_values(header, name))
            .unwrap_or_default()
    }

    fn header_matches(&self, name: &str, needle: &[u8]) -> bool {
        let values = self.header_values(name);
        if needle.is_empty() {
            return !values.is_empty();
        }
        let address = ADDRESS_FIELDS.iter().any(|a| a.eq_ignore_ascii_case(name));
        // Only encoded words need decoding; anything else matches (or not) as it stands.
        // Addresses also match as `name <mailbox@host>`, whatever comments and routes the
        // sender wrote around them.
        values.iter().any(|v| {
            contains_ci(v, needle)
                || (!v.is_ascii() && contains_text(&String::from_utf8_lossy(v), needle))
                || (contains_ci(v, b"=?") && contains_text(&decode_header(v), needle))
                || (address && {
                    let plain = search_text(&strip_breaks(v));
                    contains_ci(&plain, needle)
                        || (contains_ci(&plain, b"=?")
                            && contains_text(&decode_header(&plain), needle))
                })
        })
    }

    fn body_matches(&self, needle: &[u8], with_header: bool) -> bool {
        if with_header && self.header.is_some_and(|h| contains_ci(h, needle)) {
            return true;
        }
        if self.parts.iter().any(|p| contains_ci(p, needle)) {
            return true;
        }
        let text = self
            .text
            .get_or_init(|| searched_text(self.parts, &self.text_parts));
        contains_text(text, needle)
    }

    fn sent_date(&self) -> Option<NaiveDate> {
        let v = self.header_values("Date");
        let (unix, offset) = parse_date(v.first()?)?;
        Some(local_date(Timestamp {
            unix,
            offset_minutes: offset,
        }))
    }
}

fn local_date(t: Timestamp) -> NaiveDate {
    let secs = t.unix + i64::from(t.offset_minutes) * 60;
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .date_naive()
}

fn matches(k: &SearchKey<'_>, c: &Candidate<'_>, sel: &Selected, max_uid: u32, now: i64) -> bool {
    use SearchKey as K;
    let sys = c.entry.flags.system;
    let kw_named = |name: &str| {
        sel.keywords
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .is_some_and(|(id, _)| c.entry.flags.has_keyword(*id))
    };
    let s = |a: &imap_codec::imap_types::core::AString<'_>| a.as_ref().to_vec();
    match k {
        K::And(ks) => ks.as_ref().iter().all(|k| matches(k, c, sel, max_uid, now)),
        K::Or(a, b) => matches(a, c, sel, max_uid, now) || matches(b, c, sel, max_uid, now),
        K::Not(k) => !matches(k, c, sel, max_uid, now),
        K::SequenceSet(set) => ranges(set, sel.exists())
            .iter()
            .any(|&(a, b)| a <= c.seq && c.seq <= b),
        K::Uid(set) => ranges(set, max_uid)
            .iter()
            .any(|&(a, b)| a <= c.entry.uid.0 && c.entry.uid.0 <= b),
        K::All => true,
        K::Answered => sys.contains(SystemFlags::ANSWERED),
        K::Unanswered => !sys.contains(SystemFlags::ANSWERED),
        K::Deleted => sys.contains(SystemFlags::DELETED),
        K::Undeleted => !sys.contains(SystemFlags::DELETED),
        K::Draft => sys.contains(SystemFlags::DRAFT),
        K::Undraft => !sys.contains(SystemFlags::DRAFT),
        K::Flagged => sys.contains(SystemFlags::FLAGGED),
        K::Unflagged => !sys.contains(SystemFlags::FLAGGED),
        K::Seen => sys.contains(SystemFlags::SEEN),
        K::Unseen => !sys.contains(SystemFlags::SEEN),
        K::Recent => c.recent,
        K::New => c.recent && !sys.contains(SystemFlags::SEEN),
        K::Old => !c.recent,
        K::Keyword(a) => kw_named(a.as_ref()),
        K::Unkeyword(a) => !kw_named(a.as_ref()),
        K::Larger(n) => c.entry.size > u64::from(*n),
        K::Smaller(n) => c.entry.size < u64::from(*n),
        K::Before(d) => local_date(c.entry.internal_date) < *d.as_ref(),
        K::On(d) => local_date(c.entry.internal_date) == *d.as_ref(),
        K::Since(d) => local_date(c.entry.internal_date) >= *d.as_ref(),
        K::SentBefore(d) => c.sent_date().is_some_and(|x| x < *d.as_ref()),
        K::SentOn(d) => c.sent_date().is_some_and(|x| x == *d.as_ref()),
        K::SentSince(d) => c.sent_date().is_some_and(|x| x >= *d.as_ref()),
        K::From(v) => c.header_matches("From", &s(v)),
        K::To(v) => c.header_matches("To", &s(v)),
        K::Cc(v) => c.header_matches("Cc", &s(v)),
        K::Bcc(v) => c.header_matches("Bcc", &s(v)),
        K::Subject(v) => c.header_matches("Subject", &s(v)),
        K::Header(name, v) => c.header_matches(&String::from_utf8_lossy(name.as_ref()), &s(v)),
        K::Body(v) => c.body_matches(&s(v), false),
        K::Text(v) => c.body_matches(&s(v), true),
        // One MODSEQ per message: an entry name, if given, is answered from it (RFC 7162
        // 3.1.5 allows this).
        K::ModSequence { modseq, .. } => c.entry.modseq.0 >= *modseq,
        // RFC 5032: at least (OLDER) or at most (YOUNGER) that many seconds before now.
        K::Older(secs) => c.entry.internal_date.unix <= now - i64::from(secs.get()),
        K::Younger(secs) => c.entry.internal_date.unix >= now - i64::from(secs.get()),
    }
}

/// The strings every match must contain, and where: the text and header keys of the top-level
/// conjunction, which the full-text index narrows by.
fn text_needles(k: &SearchKey<'_>, out: &mut Vec<(Vec<u8>, TextScope)>) {
    use SearchKey as K;
    match k {
        K::And(ks) => ks.as_ref().iter().for_each(|k| text_needles(k, out)),
        K::Body(v) => out.push((v.as_ref().to_vec(), TextScope::Body)),
        K::Text(v) => out.push((v.as_ref().to_vec(), TextScope::Text)),
        K::Subject(v) | K::From(v) | K::To(v) | K::Cc(v) | K::Bcc(v) | K::Header(_, v) => {
            out.push((v.as_ref().to_vec(), TextScope::Header))
        }
        _ => {}
    }
}

/// Messages whose searchable bytes are held at once: the full-text index's copies or the
/// store's reads (then C at a time in flight), so memory does not grow with the mailbox.
const COMPARED_AT_ONCE: usize = 512;

/// What a body comparison needs besides the messages.
struct Compare<'a> {
    key: &'a SearchKey<'a>,
    sel: &'a Selected,
    max_uid: u32,
    now: i64,
}

/// Compares `chunk` against the criteria, each message's searchable bytes taken from the
/// full-text index when it holds them and read from the store (one covering range per
/// message, all in flight together) otherwise; adds the matches to `hits`.
async fn compare(
    user: &UserStore,
    chunk: &[&(u32, ViewEntry)],
    content_of: &impl Fn(&ViewEntry) -> Option<ContentRecord>,
    ctx: &Compare<'_>,
    hits: &mut Vec<Hit>,
) -> Result<(), StoreError> {
    let contents: Vec<Option<ContentRecord>> = chunk.iter().map(|(_, e)| content_of(e)).collect();
    let held: Vec<usize> = (0..chunk.len())
        .filter(|&i| contents[i].is_some() && user.fts_holds(&chunk[i].1.guid))
        .collect();
    let mut stored: Vec<Option<(Bytes, Vec<Bytes>)>> = vec![None; chunk.len()];
    let texts = user
        .fts_texts(held.iter().map(|&i| chunk[i].1.guid).collect())
        .await;
    for (i, t) in held.into_iter().zip(texts) {
        stored[i] = t.map(|t| {
            (
                Bytes::from(t.header),
                t.parts.into_iter().map(Bytes::from).collect(),
            )
        });
    }
    let reads = contents
        .iter()
        .zip(&stored)
        .filter_map(|(c, s)| match (c, s) {
            (Some(c), None) => {
                let span = searched_span(&c.parsed.structure);
                Some(BodyRead {
                    guid: c.guid,
                    location: c.location.clone(),
                    size: span.end,
                    range: Some(span),
                })
            }
            _ => None,
        })
        .collect();
    let mut bodies = user.bodies(reads);
    for (i, (seq, e)) in chunk.iter().enumerate() {
        let Some(content) = contents[i].as_ref() else {
            continue;
        };
        let root = &content.parsed.structure;
        let (header, parts) = match stored[i].take() {
            Some(held) => held,
            None => match bodies.next().await {
                Some(Ok(b)) => searched_slices(root, &b),
                Some(Err(e)) => return Err(e),
                None => break,
            },
        };
        let c = Candidate {
            seq: *seq,
            entry: e,
            recent: ctx.sel.recent.contains(&e.uid),
            content: Some(content),
            header: Some(&header),
            parts: &parts,
            text_parts: text_parts(root),
            text: Default::default(),
        };
        if matches(ctx.key, &c, ctx.sel, ctx.max_uid, ctx.now) {
            hits.push(Hit {
                seq: *seq,
                uid: e.uid,
                modseq: e.modseq,
            });
        }
    }
    Ok(())
}

pub(super) async fn search(
    m: &mut InMailbox<'_>,
    tag: &str,
    charset: Option<Charset<'_>>,
    criteria: imap_codec::imap_types::core::Vec1<SearchKey<'_>>,
    uid: bool,
    ret: Option<SearchReturn>,
    r: &mut Responder<'_>,
) -> R {
    if ret.as_ref().is_some_and(|r| r.save) {
        // A SAVE that fails leaves the result empty (RFC 5182 2.1).
        m.sel.saved.clear();
    }
    if let Some(cs) = &charset {
        let cs = cs.as_ref();
        if !cs.eq_ignore_ascii_case("UTF-8") && !cs.eq_ignore_ascii_case("US-ASCII") {
            r.tagged_no(
                tag,
                Some("BADCHARSET (UTF-8 US-ASCII)"),
                "charset not supported",
            );
            return Ok(Step::CONTINUE);
        }
    }
    let keys = criteria.into_inner();
    let key = if keys.len() == 1 {
        keys.into_iter().next().expect("one key")
    } else {
        SearchKey::And(keys.try_into().expect("non-empty"))
    };
    let mut need = Needs::default();
    needs(&key, &mut need);
    if need.recent && m.enabled.rev2 {
        r.tagged_bad(
            tag,
            None,
            "RECENT, NEW and OLD are not IMAP4rev2 search keys",
        );
        return Ok(Step::CONTINUE);
    }
    let user = m.user.clone();
    let sel = &*m.sel;
    let entries: Vec<(u32, ViewEntry)> = sel
        .uids
        .iter()
        .enumerate()
        .filter_map(|(i, u)| sel.entry(*u).map(|e| (i as u32 + 1, e)))
        .collect();
    let max_uid = sel.uids.last().map_or(0, |u| u.0);
    let now = chrono::Utc::now().timestamp();
    // Header criteria read the synced fields; a body search also needs the MIME tree to know
    // which ranges to read.
    let want = Parts {
        headers: true,
        structure: need.body,
        ..Parts::default()
    };
    let snap = if need.content {
        match user.snapshot() {
            Ok(s) => Some(s),
            Err(e) => {
                super::store_error(r, tag, &e);
                return Ok(Step::CONTINUE);
            }
        }
    } else {
        None
    };
    let content_of = |e: &ViewEntry| {
        snap.as_ref()
            .and_then(|snap| snap.content_parts(&e.guid, want).ok().flatten())
    };
    let mut hits = Vec::new();
    let mut needles = Vec::new();
    text_needles(&key, &mut needles);
    // Every full-text candidate set holds all matches among the messages the index holds;
    // a message it does not hold is always compared.
    let mut narrow: Option<HashSet<Guid>> = None;
    for (needle, scope) in needles {
        if let Some(found) = user.fts_candidates(&needle, scope).await {
            narrow = Some(match narrow {
                None => found,
                Some(n) => n.intersection(&found).copied().collect(),
            });
        }
    }
    let compared: Vec<&(u32, ViewEntry)> = entries
        .iter()
        .filter(|(_, e)| {
            narrow
                .as_ref()
                .is_none_or(|n| n.contains(&e.guid) || !user.fts_holds(&e.guid))
        })
        .collect();
    if need.body {
        for chunk in compared.chunks(COMPARED_AT_ONCE) {
            let ctx = Compare {
                key: &key,
                sel,
                max_uid,
                now,
            };
            if let Err(e) = compare(&user, chunk, &content_of, &ctx, &mut hits).await {
                super::store_error(r, tag, &e);
                return Ok(Step::CONTINUE);
            }
        }
    } else {
        for (seq, e) in compared {
            // Decoded one at a time and dropped after the match.
            let content = if need.content { content_of(e) } else { None };
            let c = Candidate {
                seq: *seq,
                entry: e,
                recent: sel.recent.contains(&e.uid),
                content: content.as_ref(),
                header: None,
                parts: &[],
                text_parts: Vec::new(),
                text: Default::default(),
            };
            if matches(&key, &c, sel, max_uid, now) {
                hits.push(Hit {
                    seq: *seq,
                    uid: e.uid,
                    modseq: e.modseq,
                });
            }
        }
    }
    if need.modseq {
        // A CONDSTORE enabling command (RFC 7162 3.1).
        m.enabled.condstore();
    }
    // IMAP4rev2 answers every SEARCH with ESEARCH, ALL unless told otherwise (RFC 9051 6.4.4).
    let ret = ret.or_else(|| {
        m.enabled.rev2.then(|| SearchReturn {
            all: true,
            ..SearchReturn::default()
        })
    });
    match ret {
        Some(ret) => esearch(m.sel, tag, uid, &ret, &hits, need.modseq, r),
        None => {
            let mut line = String::from("SEARCH");
            for h in &hits {
                line.push(' ');
                line.push_str(&h.number(uid).to_string());
            }
            if need.modseq
                && let Some(highest) = hits.iter().map(|h| h.modseq).max()
            {
                line.push_str(&format!(" (MODSEQ {})", highest.0));
            }
            r.untagged(&line);
        }
    }
    m.finish(tag, None, "SEARCH completed", false, r).await;
    Ok(Step::CONTINUE)
}

/// A message the criteria matched.
#[derive(Clone, Copy)]
struct Hit {
    seq: u32,
    uid: Uid,
    modseq: Modseq,
}

impl Hit {
    fn number(&self, uid: bool) -> u32 {
        if uid { self.uid.0 } else { self.seq }
    }
}

/// The ESEARCH answer to `RETURN (...)` (RFC 4731 3.1, RFC 9394 3.1), saving the result for
/// `$` when asked (RFC 5182 2.1). `hits` are in mailbox order.
fn esearch(
    sel: &mut Selected,
    tag: &str,
    uid: bool,
    ret: &SearchReturn,
    hits: &[Hit],
    modseq: bool,
    r: &mut Responder<'_>,
) {
    let (first, last) = (hits.first(), hits.last());
    let part: Option<&[Hit]> = ret.partial.map(|p| {
        let n = hits.len();
        let (a, b) = (p.a as usize, p.b as usize);
        let (start, end) = if p.from_end {
            (n.saturating_sub(b), n.saturating_sub(a - 1))
        } else {
            ((a - 1).min(n), b.min(n))
        };
        &hits[start..end.max(start)]
    });
    if ret.save {
        // MIN and MAX narrow what is saved, as does PARTIAL (RFC 5182 2.4, RFC 9394 3.1).
        let saved: Vec<&Hit> = if ret.min || ret.max {
            [first.filter(|_| ret.min), last.filter(|_| ret.max)]
                .into_iter()
                .flatten()
                .collect()
        } else if let Some(part) = part {
            part.iter().collect()
        } else {
            hits.iter().collect()
        };
        sel.saved = saved.iter().map(|h| h.uid).collect();
        sel.saved.sort_unstable();
        sel.saved.dedup();
        let only_save = !(ret.min || ret.max || ret.all || ret.count || ret.partial.is_some());
        if only_save {
            // SAVE alone answers nothing but the tagged OK.
            return;
        }
    }
    let set = |hs: &[Hit]| {
        let nums: Vec<Uid> = hs.iter().map(|h| Uid(h.number(uid))).collect();
        UidSet::from_sorted(&nums).to_string()
    };
    let mut line = format!("ESEARCH (TAG \"{tag}\")");
    if uid {
        line.push_str(" UID");
    }
    if let (true, Some(h)) = (ret.min, first) {
        line.push_str(&format!(" MIN {}", h.number(uid)));
    }
    if let (true, Some(h)) = (ret.max, last) {
        line.push_str(&format!(" MAX {}", h.number(uid)));
    }
    if ret.all && !hits.is_empty() {
        line.push_str(&format!(" ALL {}", set(hits)));
    }
    if let (Some(p), Some(part)) = (ret.partial, part) {
        let found = if part.is_empty() {
            "NIL".to_string()
        } else {
            set(part)
        };
        line.push_str(&format!(" PARTIAL ({p} {found})"));
    }
    if ret.count {
        line.push_str(&format!(" COUNT {}", hits.len()));
    }
    if modseq {
        // RFC 7162 3.1.5: MIN or MAX alone report their message's, else the highest found.
        let told: Vec<&Hit> = match (ret.min, ret.max, ret.all || ret.count || part.is_some()) {
            (true, false, false) => first.into_iter().collect(),
            (false, true, false) => last.into_iter().collect(),
            (true, true, false) => first.into_iter().chain(last).collect(),
            _ => hits.iter().collect(),
        };
        if let Some(highest) = told.iter().map(|h| h.modseq).max() {
            line.push_str(&format!(" MODSEQ {}", highest.0));
        }
    }
    r.untagged(&line);
}
