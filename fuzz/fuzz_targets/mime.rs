//! Any bytes as a message: parsing never panics and never nests past its limit, every part's
//! offsets lie inside the message and inside its parent, and BODYSTRUCTURE, ENVELOPE and the
//! sections of every part path render without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_index::MimePart;
use strata_mailstore::mime::{MAX_DEPTH, MAX_PARTS};
use strata_protocol::encode::Out;
use strata_protocol::structure::{SectionSpec, body_structure, envelope, section_bytes};

fn check(raw: &[u8], root: &MimePart) {
    let len = raw.len() as u64;
    let mut parts = 0;
    // Parent before children (walk order): each child lies in its parent's body.
    let mut stack: Vec<(&MimePart, usize)> = vec![(root, 0)];
    while let Some((p, depth)) = stack.pop() {
        parts += 1;
        assert!(depth < MAX_DEPTH, "nested {depth} deep");
        assert!(p.header_offset <= p.body_offset && p.body_offset <= p.end_offset);
        assert!(p.end_offset <= len);
        for c in &p.children {
            assert!(p.body_offset <= c.header_offset && c.end_offset <= p.end_offset);
            stack.push((c, depth + 1));
        }
    }
    assert!(parts <= MAX_PARTS + MAX_DEPTH);
}

fuzz_target!(|raw: &[u8]| {
    let parsed = strata_mailstore::parse(raw);
    check(raw, &parsed.structure);
    let mut o = Out::default();
    body_structure(&mut o, &parsed.structure, true);
    body_structure(&mut o, &parsed.structure, false);
    envelope(&mut o, &parsed.envelope);
    for path in [&[1u32][..], &[2], &[1, 1], &[1, 2, 1], &[3, 1, 1, 1], &[0], &[u32::MAX]] {
        for spec in [
            SectionSpec::Part(path.to_vec()),
            SectionSpec::Mime(path.to_vec()),
            SectionSpec::Header(Some(path.to_vec())),
            SectionSpec::Text(Some(path.to_vec())),
        ] {
            let _ = section_bytes(&parsed.structure, &spec);
        }
    }
});
