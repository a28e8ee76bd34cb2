//! A deterministic synthetic mail corpus with the shapes real mail has: mostly small text or
//! text+HTML messages, some with small attachments, a tail of 100 KB–5 MB attachments; encoded-word
//! subjects and names; threads through In-Reply-To and References. The same seed gives the same
//! bytes, so two servers are measured on identical mail.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Words the bodies and subjects are made of; SEARCH phases look for some of them.
pub const WORDS: &[&str] = &[
    "quarterly",
    "report",
    "meeting",
    "budget",
    "invoice",
    "project",
    "deadline",
    "review",
    "lunch",
    "travel",
    "release",
    "customer",
    "contract",
    "schedule",
    "update",
    "question",
    "design",
    "server",
    "storage",
    "latency",
    "roadmap",
    "holiday",
    "summary",
    "draft",
];

/// A word that appears in some subjects only (SEARCH SUBJECT finds a few percent).
pub const RARE_SUBJECT_WORD: &str = "zephyr";
/// A word that appears in some bodies only (SEARCH BODY finds a few percent).
pub const RARE_BODY_WORD: &str = "quokka";

fn sentence(rng: &mut StdRng, words: usize) -> String {
    let mut out = String::new();
    for i in 0..words {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[rng.random_range(0..WORDS.len())]);
    }
    out
}

fn text_block(rng: &mut StdRng, bytes: usize, rare: bool) -> String {
    let mut out = String::with_capacity(bytes + 80);
    while out.len() < bytes {
        out.push_str(&sentence(rng, 10));
        out.push_str(".\r\n");
    }
    if rare {
        out.push_str(&format!("Remember the {RARE_BODY_WORD}.\r\n"));
    }
    out
}

fn base64_block(rng: &mut StdRng, bytes: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes + bytes / 76 * 2 + 2);
    let mut line = 0;
    for _ in 0..bytes {
        out.push(ALPHABET[rng.random_range(0..64)] as char);
        line += 1;
        if line == 76 {
            out.push_str("\r\n");
            line = 0;
        }
    }
    out.push_str("\r\n");
    out
}

/// Message `i` of the corpus seeded with `seed`.
pub fn message(seed: u64, i: u32) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed ^ (u64::from(i) << 20) ^ 0x5eed);
    let roll: f64 = rng.random();
    let from_n = rng.random_range(1..200);
    let encoded_name = rng.random_bool(0.2);
    let from = if encoded_name {
        format!("=?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= {from_n} <user{from_n}@example.org>")
    } else {
        format!("Sender {from_n} <user{from_n}@example.org>")
    };
    let mut subject = sentence(&mut rng, 4);
    if rng.random_bool(0.03) {
        subject.push(' ');
        subject.push_str(RARE_SUBJECT_WORD);
    }
    if rng.random_bool(0.1) {
        subject = format!("=?UTF-8?Q?R=C3=A9sum=C3=A9?= {subject}");
    }
    let rare_body = rng.random_bool(0.03);
    let day = 1 + i % 28;
    let mut h = format!(
        "From: {from}\r\nTo: Alice <alice@example.org>\r\nSubject: {subject}\r\n\
Date: Mon, {day} Mar 2025 {:02}:{:02}:00 +0100\r\nMessage-ID: <m{i}.{seed}@bench.example.org>\r\n",
        i % 24,
        i % 60
    );
    // Threads: a third of the messages reply to an earlier one.
    if i > 0 && rng.random_bool(0.33) {
        let parent = rng.random_range(0..i);
        h.push_str(&format!(
            "In-Reply-To: <m{parent}.{seed}@bench.example.org>\r\nReferences: <m{parent}.{seed}@bench.example.org>\r\n"
        ));
    }
    h.push_str("MIME-Version: 1.0\r\n");
    let body = if roll < 0.5 {
        // Plain text, a few KB.
        let n = rng.random_range(500..6000);
        format!(
            "Content-Type: text/plain; charset=utf-8\r\n\r\n{}",
            text_block(&mut rng, n, rare_body)
        )
    } else if roll < 0.8 {
        // Text and HTML alternatives.
        let n = rng.random_range(500..4000);
        let text = text_block(&mut rng, n, rare_body);
        format!(
            "Content-Type: multipart/alternative; boundary=\"alt{i}\"\r\n\r\n\
--alt{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\
--alt{i}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>{}</p></body></html>\r\n\
--alt{i}--\r\n",
            text.replace("\r\n", "</p><p>")
        )
    } else {
        // Mixed with an attachment: most small, a tail of 100 KB to 5 MB.
        let size = if rng.random_bool(0.2) {
            rng.random_range(100_000..5_000_000)
        } else {
            rng.random_range(2_000..60_000)
        };
        let n = rng.random_range(300..2000);
        format!(
            "Content-Type: multipart/mixed; boundary=\"mix{i}\"\r\n\r\n\
--mix{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\
--mix{i}\r\nContent-Type: application/pdf; name=\"file{i}.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"file{i}.pdf\"\r\n\r\n{}\
--mix{i}--\r\n",
            text_block(&mut rng, n, rare_body),
            base64_block(&mut rng, size)
        )
    };
    h.push_str(&body);
    h.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_is_deterministic_and_shaped_like_mail() {
        assert_eq!(message(1, 5), message(1, 5));
        assert_ne!(message(1, 5), message(2, 5));
        let sizes: Vec<usize> = (0..400).map(|i| message(7, i).len()).collect();
        let small = sizes.iter().filter(|&&s| s < 10_000).count();
        let big = sizes.iter().filter(|&&s| s > 100_000).count();
        assert!(small > 250, "most messages are a few KB: {small}");
        assert!(big > 5 && big < 60, "a tail of big ones: {big}");
        let m = String::from_utf8(message(7, 3)).unwrap();
        assert!(m.contains("\r\n\r\n") && m.contains("Message-ID: <m3.7@"));
    }
}
