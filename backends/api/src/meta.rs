//! Body metadata: what a stored body says about its message, kept by the store beside the body
//! (S3 object metadata, SQL columns), so that a user's mail can be recovered from the store
//! alone when every index copy is lost. It is a recovery record, not the index: flags, UIDs
//! and MODSEQs live in the index and its shipped chain only.

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// The message a body belongs to, as it was when the body was written (or last moved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyMeta {
    /// The user whose mail it is.
    pub user: String,
    /// The id of the mailbox it was filed in (stable across renames).
    pub mailbox: u64,
    /// That mailbox's name then, its levels joined by `/`.
    pub mailbox_name: String,
    /// The message GUID, 32 lowercase hex digits.
    pub guid: String,
    /// INTERNALDATE: seconds since the Unix epoch, UTC.
    pub internal_date: i64,
    /// INTERNALDATE's zone, minutes east of UTC.
    pub zone_minutes: i16,
    /// When it was filed there (SAVEDATE), seconds since the Unix epoch.
    pub saved: i64,
    /// The body's size in octets.
    pub size: u64,
}

/// Bytes kept as they are in a pair's value; the rest are percent-encoded, so that every
/// value is printable ASCII (an HTTP header, a journal line).
const VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'%')
    .add(b'"')
    .add(b'\\')
    .add(b'=')
    .add(b'\n');

/// The names of the pairs, as S3 metadata keys (`x-amz-meta-` before each) and in a journal.
pub const PAIR_NAMES: [&str; 7] = [
    "strata-user",
    "strata-mailbox",
    "strata-mailbox-name",
    "strata-guid",
    "strata-internal-date",
    "strata-saved",
    "strata-size",
];

impl BodyMeta {
    /// The metadata as name/value pairs of printable ASCII.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let [user, mailbox, name, guid, date, saved, size] = PAIR_NAMES;
        vec![
            (user, utf8_percent_encode(&self.user, VALUE).to_string()),
            (mailbox, self.mailbox.to_string()),
            (
                name,
                utf8_percent_encode(&self.mailbox_name, VALUE).to_string(),
            ),
            (guid, self.guid.clone()),
            (
                date,
                format!("{} {}", self.internal_date, self.zone_minutes),
            ),
            (saved, self.saved.to_string()),
            (size, self.size.to_string()),
        ]
    }

    /// Reads back [`BodyMeta::to_pairs`]: `None` when the object carries none (written before
    /// stores kept it), an error naming the pair when it is damaged.
    pub fn from_pairs<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Option<Self>, String> {
        if PAIR_NAMES.iter().all(|n| get(n).is_none()) {
            return Ok(None);
        }
        let [user, mailbox, name, guid, date, saved, size] = PAIR_NAMES;
        let field = |n: &str| get(n).ok_or_else(|| format!("metadata {n} is missing"));
        let text = |n: &str| -> Result<String, String> {
            percent_decode_str(field(n)?)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| format!("metadata {n} is not UTF-8"))
        };
        fn number<T: std::str::FromStr>(n: &str, v: &str) -> Result<T, String> {
            v.trim()
                .parse()
                .map_err(|_| format!("metadata {n} is not a number: {v:?}"))
        }
        let (secs, zone) = field(date)?
            .split_once(' ')
            .ok_or_else(|| format!("metadata {date} is not \"<seconds> <zone>\""))?;
        let guid_v = field(guid)?;
        if guid_v.len() != 32 || !guid_v.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("metadata {guid} is not 32 hex digits: {guid_v:?}"));
        }
        Ok(Some(BodyMeta {
            user: text(user)?,
            mailbox: number(mailbox, field(mailbox)?)?,
            mailbox_name: text(name)?,
            guid: guid_v.to_ascii_lowercase(),
            internal_date: number(date, secs)?,
            zone_minutes: number(date, zone)?,
            saved: number(saved, field(saved)?)?,
            size: number(size, field(size)?)?,
        }))
    }

    /// The pairs as one line per pair (`name=value`), the form a journal keeps.
    pub fn encode(&self) -> String {
        self.to_pairs()
            .into_iter()
            .map(|(n, v)| format!("{n}={v}\n"))
            .collect()
    }

    /// Reads back [`BodyMeta::encode`].
    pub fn decode(text: &str) -> Result<Self, String> {
        let pairs: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let get = |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
        Self::from_pairs(get)?.ok_or_else(|| "no metadata in the record".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BodyMeta {
        BodyMeta {
            user: "anna@example.org".into(),
            mailbox: 7,
            mailbox_name: "Archiv/Grüße 100%=\"x\"".into(),
            guid: "00112233445566778899aabbccddeeff".into(),
            internal_date: 1_700_000_000,
            zone_minutes: -330,
            saved: 1_700_000_100,
            size: 4096,
        }
    }

    #[test]
    fn pairs_are_printable_ascii_and_read_back() {
        let m = sample();
        let pairs = m.to_pairs();
        for (_, v) in &pairs {
            assert!(
                v.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
                "{v:?}"
            );
        }
        let get = |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        assert_eq!(BodyMeta::from_pairs(get).unwrap(), Some(m.clone()));
        assert_eq!(BodyMeta::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn none_is_none_and_damage_names_the_pair() {
        assert_eq!(BodyMeta::from_pairs(|_| None).unwrap(), None);
        let text = sample()
            .encode()
            .replace("strata-mailbox=7", "strata-mailbox=x");
        let e = BodyMeta::decode(&text).unwrap_err();
        assert!(e.contains("strata-mailbox"), "{e}");
        let text = sample().encode().replace("strata-saved=", "strata-other=");
        assert!(
            BodyMeta::decode(&text)
                .unwrap_err()
                .contains("strata-saved")
        );
    }
}
