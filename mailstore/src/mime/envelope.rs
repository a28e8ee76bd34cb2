//! ENVELOPE from a message's header fields (RFC 3501 7.4.2). Strings are the first field's
//! value unfolded, as written; address fields are parsed by [`super::address`]. To, Cc and
//! Bcc given more than once are one list (RFC 5322 4.5.3); the other fields take the first.
//! The defaults IMAP adds (Sender and Reply-To falling back to From) are the protocol's.

use strata_index::{Address, Envelope};

use super::address::parse_list;
use super::header::{Field, first};

/// The envelope of a message whose header is `fields`.
pub(crate) fn of(raw: &[u8], fields: &[Field]) -> Envelope {
    let text = |name: &str| first(fields, raw, name).map(|f| f.unfolded(raw));
    let one = |name: &str| {
        first(fields, raw, name)
            .map(|f| parse_list(&f.unfolded(raw)))
            .unwrap_or_default()
    };
    let every = |name: &str| -> Vec<Address> {
        fields
            .iter()
            .filter(|f| f.is(raw, name))
            .flat_map(|f| parse_list(&f.unfolded(raw)))
            .collect()
    };
    Envelope {
        date: text("Date"),
        subject: text("Subject"),
        from: one("From"),
        sender: one("Sender"),
        reply_to: one("Reply-To"),
        to: every("To"),
        cc: every("Cc"),
        bcc: every("Bcc"),
        in_reply_to: text("In-Reply-To"),
        message_id: text("Message-ID"),
    }
}
