//! The full-text index against a direct comparison: its candidates always include every
//! message that matches, its stored bytes are what went in, and it survives reopening and
//! damage.

use proptest::prelude::*;
use strata_fts::{Kept, Message, Opened, Scope, TextIndex};

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

fn contains_text(hay: &str, needle: &[u8]) -> bool {
    hay.to_lowercase()
        .contains(&String::from_utf8_lossy(needle).to_lowercase())
}

/// SEARCH's comparison, as the protocol makes it.
fn matches(d: &Doc, needle: &[u8], scope: Scope) -> bool {
    match scope {
        Scope::Header => {
            contains_ci(&d.header, needle)
                || d.fields
                    .iter()
                    .any(|f| contains_ci(f.as_bytes(), needle) || contains_text(f, needle))
        }
        _ => {
            (scope == Scope::Text && contains_ci(&d.header, needle))
                || d.parts.iter().any(|p| contains_ci(p, needle))
                || contains_text(&d.text, needle)
        }
    }
}

#[derive(Debug)]
struct Doc {
    header: Vec<u8>,
    parts: Vec<Vec<u8>>,
    text: String,
    fields: Vec<String>,
}

fn alphabet() -> impl Strategy<Value = String> {
    // Few letters, so needles often match; case, accents, Greek sigma and dotted I included.
    proptest::collection::vec(
        prop::sample::select(vec![
            "a", "B", "c", " ", "é", "É", "Σ", "σ", "ς", "İ", "i", "\r\n", "=", "ß",
        ]),
        0..40,
    )
    .prop_map(|v| v.concat())
}

fn doc() -> impl Strategy<Value = Doc> {
    (
        alphabet(),
        proptest::collection::vec(alphabet(), 0..3),
        alphabet(),
        proptest::collection::vec(any::<u8>(), 0..8),
        proptest::collection::vec(alphabet(), 0..3),
    )
        .prop_map(|(h, parts, text, junk, fields)| {
            let mut header = h.into_bytes();
            header.extend_from_slice(&junk);
            Doc {
                header,
                parts: parts.into_iter().map(String::into_bytes).collect(),
                text,
                fields,
            }
        })
}

fn guid(i: usize) -> [u8; 16] {
    let mut g = [0u8; 16];
    g[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    g
}

fn add(ix: &TextIndex, docs: &[Doc]) {
    let messages: Vec<Message<'_>> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| Message {
            guid: guid(i),
            header: &d.header,
            parts: d.parts.iter().map(Vec::as_slice).collect(),
            text: &d.text,
            fields: &d.fields,
        })
        .collect();
    ix.apply(&messages, &[]).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn candidates_include_every_match(
        docs in proptest::collection::vec(doc(), 1..12),
        needles in proptest::collection::vec(alphabet(), 1..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (ix, _) = TextIndex::open(dir.path(), 0).unwrap();
        add(&ix, &docs);
        for needle in &needles {
            for scope in [Scope::Body, Scope::Text, Scope::Header] {
                let Some(cands) = ix.candidates(needle.as_bytes(), scope).unwrap() else {
                    prop_assert!(needle.chars().count() < 3 || needle.to_lowercase().chars().count() < 3);
                    continue;
                };
                for (i, d) in docs.iter().enumerate() {
                    if matches(d, needle.as_bytes(), scope) {
                        prop_assert!(cands.contains(&guid(i)), "{needle:?} in doc {i} missed");
                    }
                }
            }
        }
        let stored = ix.texts(&(0..docs.len()).map(guid).collect::<Vec<_>>()).unwrap();
        for (d, s) in docs.iter().zip(stored) {
            let s = s.unwrap();
            prop_assert_eq!(&s.header, &d.header);
            prop_assert_eq!(&s.parts, &d.parts);
        }
    }
}

#[test]
fn narrows_reopens_removes_and_resets() {
    let dir = tempfile::tempdir().unwrap();
    let docs = vec![
        Doc {
            header: b"Subject: Quarterly figures\r\n\r\n".to_vec(),
            parts: vec![b"Revenue grew =C3=A9".to_vec()],
            text: "Revenue grew é".into(),
            fields: vec!["Été à Paris".into()],
        },
        Doc {
            header: b"Subject: lunch\r\n\r\n".to_vec(),
            parts: vec![b"Shall we meet at noon?".to_vec(), Vec::new()],
            text: "Shall we meet at noon?\n".into(),
            fields: Vec::new(),
        },
    ];
    {
        let (ix, how) = TextIndex::open(dir.path(), 0).unwrap();
        assert_eq!(how, Opened::Created);
        add(&ix, &docs);
        let c = |n: &str, s| ix.candidates(n.as_bytes(), s).unwrap().unwrap();
        assert_eq!(c("REVENUE", Scope::Body).len(), 1);
        assert!(c("quarterly", Scope::Body).is_empty());
        assert!(c("quarterly", Scope::Text).contains(&guid(0)));
        assert!(c("quarterly", Scope::Header).contains(&guid(0)));
        assert!(c("ÉTÉ À", Scope::Header).contains(&guid(0)));
        assert!(
            c("été", Scope::Text).is_empty(),
            "decoded header forms are not TEXT's"
        );
        assert!(c("noon", Scope::Header).is_empty());
        assert!(c("grew É", Scope::Body).contains(&guid(0)));
        assert!(c("=c3=a9", Scope::Body).contains(&guid(0)));
        assert_eq!(ix.candidates(b"no", Scope::Body).unwrap(), None);
        assert_eq!(ix.candidates(b"\xff\xfeabc", Scope::Body).unwrap(), None);
    }
    let (ix, how) = TextIndex::open(dir.path(), 0).unwrap();
    assert_eq!(how, Opened::Existing);
    assert_eq!(ix.len(), 2);
    assert_eq!(ix.kept(&guid(1)), Some(Kept::Text));
    let stored = ix.texts(&[guid(1)]).unwrap().remove(0).unwrap();
    assert_eq!(stored.parts, docs[1].parts);
    ix.apply(&[], &[guid(1)]).unwrap();
    assert_eq!(ix.kept(&guid(1)), None);
    assert!(
        ix.candidates(b"noon", Scope::Body)
            .unwrap()
            .unwrap()
            .is_empty()
    );
    assert_eq!(ix.texts(&[guid(1)]).unwrap(), vec![None]);

    let big = vec![b'x'; strata_fts::MAX_TEXT + 1];
    let m = Message {
        guid: guid(7),
        header: b"",
        parts: vec![&big],
        text: "",
        fields: &[],
    };
    ix.apply(&[m], &[]).unwrap();
    assert_eq!(ix.kept(&guid(7)), Some(Kept::TooLarge));
    assert_eq!(ix.texts(&[guid(7)]).unwrap(), vec![None]);
    drop(ix);

    // A damaged index is a cache: it is replaced, and says so.
    std::fs::write(dir.path().join("meta.json"), b"{ not json").unwrap();
    let (ix, how) = TextIndex::open(dir.path(), 0).unwrap();
    assert!(matches!(how, Opened::Reset(_)), "{how:?}");
    assert!(ix.is_empty());
}
