//! Markdown tables of benchmark results: one per target, and the side-by-side comparison with
//! the ratio of each phase.

use std::fmt::Write;

use super::PhaseResult;

fn ms(d: std::time::Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// One target's phases.
pub fn table(name: &str, results: &[PhaseResult]) -> String {
    let mut s = format!(
        "#### {name}\n\n| phase | total ms | commands | p50 ms | p99 ms | errors | peak MiB | other |\n|---|---:|---:|---:|---:|---:|---:|---|\n"
    );
    for r in results {
        let other = r
            .figure
            .as_ref()
            .map(|(k, v)| format!("{v:.0} {k}"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.phase,
            ms(r.total),
            r.samples.len(),
            ms(r.quantile(0.5)),
            ms(r.quantile(0.99)),
            r.errors,
            r.peak.map_or("".into(), |b| (b >> 20).to_string()),
            other
        );
    }
    s
}

/// How `a` compares with `b` on a phase: time ratio for timed phases (below 1 means `a` is
/// faster), rate ratio for the mixed run, memory ratio for idle connections.
pub fn ratio(a: &PhaseResult, b: &PhaseResult) -> (String, f64) {
    match (&a.figure, &b.figure) {
        (Some((k, x)), Some((_, y))) if k == "commands/s" => {
            ("commands/s ratio".into(), x / y.max(1e-9))
        }
        (Some((k, x)), Some((_, y))) if k == "bytes/connection" => {
            ("memory ratio".into(), x / y.max(1e-9))
        }
        _ => (
            "time ratio".into(),
            a.total.as_secs_f64() / b.total.as_secs_f64().max(1e-9),
        ),
    }
}

/// The side-by-side table of two targets.
pub fn side_by_side(a: &str, ra: &[PhaseResult], b: &str, rb: &[PhaseResult]) -> String {
    let mut s = format!(
        "| phase | {a} total ms | {b} total ms | {a} p50 / p99 ms | {b} p50 / p99 ms | {a} ÷ {b} |\n|---|---:|---:|---:|---:|---|\n"
    );
    for (x, y) in ra.iter().zip(rb) {
        let (kind, r) = ratio(x, y);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} / {} | {} / {} | {r:.2} ({kind}) |",
            x.phase,
            ms(x.total),
            ms(y.total),
            ms(x.quantile(0.5)),
            ms(x.quantile(0.99)),
            ms(y.quantile(0.5)),
            ms(y.quantile(0.99)),
        );
    }
    s
}

/// The targets Strata is held to against the reference, each with what was measured.
pub fn targets(strata: &[PhaseResult], reference: &[PhaseResult], name: &str) -> String {
    let find = |rs: &[PhaseResult], p: &str| rs.iter().find(|r| r.phase == p).cloned();
    let mut s = format!("| target (against {name}) | measured | met |\n|---|---|---|\n");
    let mut row = |what: &str, measured: String, met: bool| {
        let _ = writeln!(
            s,
            "| {what} | {measured} | {} |",
            if met { "yes" } else { "no" }
        );
    };
    for (phase, what) in [
        ("append-1", "APPEND throughput on one connection ≥ 4×"),
        ("append-n", "APPEND throughput on N connections ≥ 4×"),
    ] {
        if let (Some(a), Some(b)) = (find(strata, phase), find(reference, phase)) {
            let x = b.total.as_secs_f64() / a.total.as_secs_f64().max(1e-9);
            row(what, format!("{x:.2}×"), x >= 4.0);
        }
    }
    for phase in [
        "fetch-meta",
        "fetch-envelope",
        "fetch-bodystructure",
        "fetch-headers",
        "fetch-bodies",
        "store",
        "search-header",
    ] {
        if let (Some(a), Some(b)) = (find(strata, phase), find(reference, phase)) {
            let x = a.total.as_secs_f64() / b.total.as_secs_f64().max(1e-9);
            row(
                &format!("{phase} time ≤ 0.5×"),
                format!("{x:.2}×"),
                x <= 0.5,
            );
        }
    }
    if let (Some(a), Some(b)) = (find(strata, "mixed"), find(reference, "mixed")) {
        let (_, x) = ratio(&a, &b);
        let errors = a.errors + b.errors;
        row(
            "mixed commands/s ≥ 1.5×, zero errors",
            format!("{x:.2}×, {} + {} errors", a.errors, b.errors),
            x >= 1.5 && errors == 0,
        );
    }
    if let Some(a) = find(strata, "idle-memory")
        && let Some((_, bytes)) = a.figure
    {
        row(
            "memory per IDLE connection ≤ 64 KB",
            format!("{:.1} KB", bytes / 1024.0),
            bytes <= 64.0 * 1024.0,
        );
    }
    s
}
