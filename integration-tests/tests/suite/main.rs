//! Strata end to end, one test binary: each module drives a real server over IMAP (TCP, TLS,
//! STARTTLS) or as a process; `imap` is the suite run once per store (`STRATA_TEST_BACKEND`).
//! One binary rather than one per file: each would link the whole server again.

mod binary;
mod compress;
mod condstore;
mod crash;
mod esearch;
mod fts;
mod hostile;
mod imap;
mod imap4rev2;
mod list_extended;
mod lmtp;
mod logins;
mod maildir;
mod metrics;
mod migrate;
mod node_loss;
mod objectid;
mod postfix;
mod qresync;
mod quota;
mod reconcile;
mod rfc3501;
mod s3;
mod savedate_preview;
mod scram;
mod sis;
mod status_within;
mod tiering;
