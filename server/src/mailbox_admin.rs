//! What a mail admin asks of one user's mailboxes from the command line: `strata mailbox list`
//! and `status`, and `strata expunge --before` (retention). Each goes through the running
//! server's control socket, which holds the index, or with none running reads the index (or
//! opens the stores) here.

use std::sync::Arc;

use anyhow::{Context, bail};
use strata_config::Config;
use strata_mailstore::Mailstore;
use strata_mailstore::model::{SystemFlags, Uid};
use strata_mailstore::names;

/// UIDs expunged per index transaction, so a large retention run never holds the writer long.
const EXPUNGE_BATCH: usize = 1000;

/// One mailbox's counts, as `status` prints them.
struct Row {
    name: String,
    special: Option<String>,
    messages: u32,
    unseen: u32,
    deleted: u32,
    size: u64,
    uid_next: u32,
    uid_validity: u32,
}

impl Row {
    /// The control socket's form: fields separated by tabs (a mailbox name holds none).
    fn line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.name,
            self.special.as_deref().unwrap_or(""),
            self.messages,
            self.unseen,
            self.deleted,
            self.size,
            self.uid_next,
            self.uid_validity
        )
    }

    fn parse(line: &str) -> Option<Row> {
        let f: Vec<&str> = line.split('\t').collect();
        let [
            name,
            special,
            messages,
            unseen,
            deleted,
            size,
            uid_next,
            uid_validity,
        ] = f[..]
        else {
            return None;
        };
        Some(Row {
            name: name.to_string(),
            special: (!special.is_empty()).then(|| special.to_string()),
            messages: messages.parse().ok()?,
            unseen: unseen.parse().ok()?,
            deleted: deleted.parse().ok()?,
            size: size.parse().ok()?,
            uid_next: uid_next.parse().ok()?,
            uid_validity: uid_validity.parse().ok()?,
        })
    }
}

/// The control socket's `mailboxes USER`: a line per mailbox.
pub async fn answer_control(store: &Arc<Mailstore>, user: &str) -> anyhow::Result<Vec<String>> {
    let u = store.user(user).await?;
    Ok(rows_of(&u.snapshot()?)?.iter().map(Row::line).collect())
}

fn rows_of(snap: &strata_index::Snapshot) -> anyhow::Result<Vec<Row>> {
    let mut out = Vec::new();
    for rec in snap.mailboxes()? {
        let Some(path) = snap.path_of(rec.id)? else {
            continue;
        };
        let mut deleted = 0;
        for m in snap.messages(rec.id)? {
            deleted += u32::from(m.flags.system.contains(SystemFlags::DELETED));
        }
        out.push(Row {
            name: names::shown(&names::join_name(&path), true).into_owned(),
            special: rec.special_use.map(|u| format!("{u:?}")),
            messages: rec.messages,
            unseen: rec.unseen,
            deleted,
            size: rec.size,
            uid_next: rec.uid_next.0,
            uid_validity: rec.uid_validity,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

async fn rows(cfg: &Config, user: &str) -> anyhow::Result<Vec<Row>> {
    crate::users::check_name(user)?;
    let mut lines = Vec::new();
    let asked = crate::control::request(&cfg.data_dir, &format!("mailboxes {user}"), &mut |l| {
        lines.push(l.to_string())
    })
    .await?;
    if asked.is_some() {
        return lines
            .iter()
            .map(|l| Row::parse(l).with_context(|| format!("the server answered {l:?}")))
            .collect();
    }
    let path = crate::index_path(&cfg.data_dir, user);
    if !path.exists() {
        bail!("{user:?} has no mail index here ({})", path.display());
    }
    let index = strata_index::ReadOnlyIndex::open(&path)?;
    rows_of(&index.snapshot()?)
}

/// `strata mailbox list`: each mailbox's name, with its special use.
pub async fn list(cfg: &Config, user: &str) -> anyhow::Result<String> {
    Ok(rows(cfg, user)
        .await?
        .iter()
        .map(|r| match &r.special {
            Some(u) => format!("{} (\\{u})\n", r.name),
            None => format!("{}\n", r.name),
        })
        .collect())
}

/// `strata mailbox status`: counts of every mailbox (or the one named), and the total.
pub async fn status(cfg: &Config, user: &str, mailbox: Option<&str>) -> anyhow::Result<String> {
    let mut rows = rows(cfg, user).await?;
    if let Some(m) = mailbox {
        rows.retain(|r| r.name == m);
        if rows.is_empty() {
            bail!("{user:?} has no mailbox named {m:?}");
        }
    }
    let mut out = format!(
        "{:<32} {:>9} {:>9} {:>9} {:>12} {:>9} {:>12}\n",
        "mailbox", "messages", "unseen", "deleted", "size", "uidnext", "uidvalidity"
    );
    let (mut messages, mut size) = (0u64, 0u64);
    for r in &rows {
        messages += u64::from(r.messages);
        size += r.size;
        out.push_str(&format!(
            "{:<32} {:>9} {:>9} {:>9} {:>12} {:>9} {:>12}\n",
            r.name, r.messages, r.unseen, r.deleted, r.size, r.uid_next, r.uid_validity
        ));
    }
    if mailbox.is_none() {
        out.push_str(&format!(
            "{:<32} {messages:>9} {:>9} {:>9} {size:>12}\n",
            "total", "", ""
        ));
    }
    Ok(out)
}

/// `--before`: a date (`2024-01-31`, midnight UTC) or an age in days (`30d`), as a Unix time.
pub fn parse_before(text: &str, now: i64) -> anyhow::Result<i64> {
    if let Some(days) = text.strip_suffix('d') {
        let days: i64 = days
            .parse()
            .with_context(|| format!("{text:?}: expected a number of days like 30d"))?;
        return Ok(now - days * 86_400);
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .with_context(|| format!("{text:?}: expected a date like 2024-01-31 or an age like 30d"))?;
    Ok(date
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp())
}

/// Expunges from `user`'s `mailbox` every message whose INTERNALDATE is before `before` (Unix
/// time), in batches; returns how many.
pub async fn expunge_before(
    store: &Arc<Mailstore>,
    user: &str,
    mailbox: &str,
    before: i64,
) -> anyhow::Result<usize> {
    let u = store.user(user).await?;
    let path = names::split_name(mailbox.as_bytes())?;
    let snap = u.snapshot()?;
    let rec = u.find(&snap, &path)?;
    let old: Vec<Uid> = snap
        .messages(rec.id)?
        .into_iter()
        .filter(|m| m.internal_date.unix < before)
        .map(|m| m.uid)
        .collect();
    drop(snap);
    let mut done = 0;
    for batch in old.chunks(EXPUNGE_BATCH) {
        done += u.expunge(rec.id, batch.to_vec()).await?.len();
    }
    Ok(done)
}

/// `strata expunge`: through the running server, else with the stores opened here.
pub async fn expunge(
    cfg: &Config,
    user: &str,
    mailbox: &str,
    before: i64,
) -> anyhow::Result<usize> {
    crate::users::check_name(user)?;
    let request = format!("expunge {user} {before} {mailbox}");
    if let Some(answer) = crate::control::request(&cfg.data_dir, &request, &mut |_| {}).await? {
        return answer
            .parse()
            .with_context(|| format!("the server answered {answer:?}"));
    }
    let (store, _backends) = crate::serve::mailstore(cfg).await?;
    let done = expunge_before(&store, user, mailbox, before).await;
    if let Ok(u) = store.user(user).await {
        // The graves' bodies are deleted before the stores close.
        u.release_graves().await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(60), u.flush()).await;
    }
    store.close_idle().await;
    done
}

#[cfg(test)]
mod tests {
    use super::parse_before;

    #[test]
    fn before_is_a_date_at_midnight_utc_or_an_age_in_days() {
        assert_eq!(parse_before("2024-01-31", 0).unwrap(), 1_706_659_200);
        assert_eq!(
            parse_before("30d", 3_000_000).unwrap(),
            3_000_000 - 30 * 86_400
        );
        for bad in ["yesterday", "31-01-2024", "xd", ""] {
            assert!(parse_before(bad, 0).is_err(), "{bad:?}");
        }
    }
}
