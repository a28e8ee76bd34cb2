//! SCRAM-SHA-256 (RFC 7677 over RFC 5802), the server's side: the keys an account keeps, from
//! which no password can be recovered or replayed, and the exchange that checks a client's
//! proof against them. The client does the expensive key stretching; the server's work is a few
//! HMACs. No channel binding is offered (no `-PLUS`): a client that requires it is refused, one
//! that could use it but thinks the server cannot (`y`) goes on, since that is so.
//!
//! It is neither where keys are stored (the server's accounts) nor the login limits (the
//! [`crate::Authenticator`]).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Iterations of a newly derived key: RFC 7677's minimum, what common clients expect to pay.
pub const ITERATIONS: u32 = 4096;

type Key = [u8; 32];

/// What an account stores for SCRAM-SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramKeys {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// The salt.
    pub salt: Vec<u8>,
    /// H(ClientKey): what a proof is checked against.
    pub stored_key: Key,
    /// What the server signs its final message with.
    pub server_key: Key,
}

fn hmac(key: &[u8], data: &[u8]) -> Key {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

impl ScramKeys {
    /// The keys of `password` (SASLprep'd where it can be) under `salt`.
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> ScramKeys {
        let prepared = stringprep::saslprep(password)
            .map(|p| p.into_owned())
            .unwrap_or_else(|_| password.to_string());
        let mut salted: Key = [0; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(prepared.as_bytes(), salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        ScramKeys {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// Keys for `password` under a fresh random salt.
    pub fn new(password: &str) -> ScramKeys {
        ScramKeys::derive(password, &rand::random::<[u8; 16]>(), ITERATIONS)
    }

    /// `iterations$salt$stored$server`, base64: no `:` or `,`, so it sits in an account record.
    pub fn encode(&self) -> String {
        format!(
            "{}${}${}${}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }

    /// Reads what [`ScramKeys::encode`] wrote.
    pub fn parse(text: &str) -> Option<ScramKeys> {
        let mut parts = text.split('$');
        let iterations = parts.next()?.parse().ok().filter(|&i| i > 0)?;
        let salt = B64.decode(parts.next()?).ok()?;
        let key = |p: Option<&str>| -> Option<Key> { B64.decode(p?).ok()?.try_into().ok() };
        let (stored_key, server_key) = (key(parts.next())?, key(parts.next())?);
        if parts.next().is_some() {
            return None;
        }
        Some(ScramKeys {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }
}

/// Why an exchange ended without a login.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message does not follow RFC 5802's grammar.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client requires channel binding, which is not offered.
    #[error("channel binding is not supported")]
    ChannelBinding,
    /// The client asks to act as another user.
    #[error("acting as another user is not allowed")]
    Authorization,
    /// The proof does not match the stored key.
    #[error("invalid proof")]
    Proof,
}

/// The client's first message, read.
#[derive(Debug)]
pub struct ClientFirst {
    /// The user name, unescaped.
    pub user: String,
    gs2_header: String,
    bare: String,
    nonce: String,
}

/// Reads a client-first-message.
pub fn client_first(message: &[u8]) -> Result<ClientFirst, ScramError> {
    let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let mut fields = text.splitn(3, ',');
    let (cbind, authzid) = (fields.next().unwrap_or_default(), fields.next());
    let bare = fields
        .next()
        .ok_or(ScramError::Malformed("no GS2 header"))?;
    match cbind {
        "n" | "y" => {}
        c if c.starts_with("p=") => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::Malformed("bad channel-binding flag")),
    }
    let authzid = authzid.unwrap_or_default();
    let gs2_header = format!("{cbind},{authzid},");
    let mut attrs = bare.split(',');
    let user = match attrs.next().and_then(|a| a.strip_prefix("n=")) {
        Some(u) => unescape(u)?,
        None => return Err(ScramError::Malformed("no user name")),
    };
    let nonce = match attrs.next().and_then(|a| a.strip_prefix("r=")) {
        Some(r) if nonce_ok(r) => r.to_string(),
        _ => return Err(ScramError::Malformed("no client nonce")),
    };
    if attrs.any(|a| a.starts_with("m=")) {
        return Err(ScramError::Malformed("unsupported mandatory extension"));
    }
    if !authzid.is_empty() {
        let a = authzid
            .strip_prefix("a=")
            .ok_or(ScramError::Malformed("bad authorization identity"))?;
        if unescape(a)? != user {
            return Err(ScramError::Authorization);
        }
    }
    Ok(ClientFirst {
        user,
        gs2_header,
        bare: bare.to_string(),
        nonce,
    })
}

/// Printable ASCII but `,`, and not empty.
fn nonce_ok(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// A saslname: `=2C` is `,` and `=3D` is `=`; any other `=` is an error.
fn unescape(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let ch = match rest.get(i + 1..i + 3) {
            Some("2C") => ',',
            Some("3D") => '=',
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        };
        out.push(ch);
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    Ok(out)
}

/// An exchange waiting for the client's final message.
pub struct Challenge {
    keys: ScramKeys,
    gs2_header: String,
    nonce: String,
    /// client-first-message-bare `,` server-first-message
    said: String,
}

impl ClientFirst {
    /// The server's first message under `keys`, with `server_nonce` appended to the client's.
    pub fn challenge(self, keys: ScramKeys, server_nonce: &str) -> (Challenge, String) {
        let nonce = format!("{}{server_nonce}", self.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&keys.salt),
            keys.iterations
        );
        let said = format!("{},{server_first}", self.bare);
        let challenge = Challenge {
            keys,
            gs2_header: self.gs2_header,
            nonce,
            said,
        };
        (challenge, server_first)
    }
}

impl Challenge {
    /// Checks a client-final-message; on success, the server-final-message to send.
    pub fn finish(&self, message: &[u8]) -> Result<String, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .and_then(|c| B64.decode(c).ok())
            .ok_or(ScramError::Malformed("no channel binding"))?;
        if binding != self.gs2_header.as_bytes() {
            return Err(ScramError::Malformed(
                "channel binding differs from the header",
            ));
        }
        if attrs.next().and_then(|a| a.strip_prefix("r=")) != Some(self.nonce.as_str()) {
            return Err(ScramError::Malformed("wrong nonce"));
        }
        let proof: Key = B64
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(ScramError::Malformed("bad proof"))?;
        let auth_message = format!("{},{without_proof}", self.said);
        let signature = hmac(&self.keys.stored_key, auth_message.as_bytes());
        let mut client_key = proof;
        for (k, s) in client_key.iter_mut().zip(signature) {
            *k ^= s;
        }
        let stored: Key = Sha256::digest(client_key).into();
        // Compared in constant time.
        let differ = stored
            .iter()
            .zip(self.keys.stored_key)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if differ != 0 {
            return Err(ScramError::Proof);
        }
        let server_signature = hmac(&self.keys.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677, section 3.
    #[test]
    fn the_rfc_7677_example_exchange() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let keys = ScramKeys::derive("pencil", &salt, 4096);
        let first = client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(first.user, "user");
        let (challenge, server_first) = first.challenge(keys, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(
            server_first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let fin = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                   p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(
            challenge.finish(fin.as_bytes()).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        // One bit off in the proof.
        let wrong = fin.replace("dHzb", "dHzc");
        assert_eq!(challenge.finish(wrong.as_bytes()), Err(ScramError::Proof));
        // Another nonce.
        let replayed = fin.replace("k0,", "k1,");
        assert!(matches!(
            challenge.finish(replayed.as_bytes()),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn keys_survive_their_encoding_which_fits_an_account_record() {
        let keys = ScramKeys::new("pässword");
        let text = keys.encode();
        assert!(!text.contains([':', ',']), "{text}");
        assert_eq!(ScramKeys::parse(&text), Some(keys));
        for bad in [
            "",
            "0$AA==$AA==$AA==",
            "4096$!!$AA==$AA==",
            "4096$AA==$AA==$AA==",
        ] {
            assert_eq!(ScramKeys::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn first_messages_are_read_strictly() {
        let user = |m: &str| client_first(m.as_bytes()).map(|f| f.user);
        assert_eq!(user("y,,n=a=2Cb=3Dc,r=xyz"), Ok("a,b=c".into()));
        assert_eq!(user("n,a=bob,n=bob,r=x"), Ok("bob".into()));
        assert_eq!(user("n,a=eve,n=bob,r=x"), Err(ScramError::Authorization));
        assert_eq!(
            user("p=tls-exporter,,n=bob,r=x"),
            Err(ScramError::ChannelBinding)
        );
        for bad in [
            "",
            "n,,",
            "x,,n=bob,r=x",
            "n,,n=bob",
            "n,,r=x,n=bob",
            "n,,n=b=2Xob,r=x",
            "n,,n=,r=x",
            "n,,n=bob,r=a b",
            "n,,m=ext,n=bob,r=x",
            "n,,n=bob,r=x,m=ext",
        ] {
            assert!(
                matches!(user(bad), Err(ScramError::Malformed(_))),
                "{bad:?}: {:?}",
                user(bad)
            );
        }
    }
}
