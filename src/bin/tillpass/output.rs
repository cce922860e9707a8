//! Text and JSON output for the CLI.

/// `println!` that ends the process quietly when stdout has been closed (`tillpass … | head`)
/// instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

use anyhow::Result;
use serde::Serialize;
use serde_json::json;

use tillpass::demo::DemoReport;
use tillpass::domain::insights::{Report, Unit};
use tillpass::domain::quote::Quote;
use tillpass::domain::summary::next_tier;
use tillpass::domain::{Entry, Program};
use tillpass::store::{MemberView, SearchHit, Store, StoreStats, VerifyReport};

/// Where results go, and in which form.
pub struct Out {
    pub json: bool,
}

fn print_json(value: &impl Serialize) -> Result<()> {
    say!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn tier_line(program: &Program, view: &MemberView) -> String {
    let tier = &program.tier(view.state.tier).name;
    match next_tier(program, &view.state) {
        Some((next, gap)) => format!(
            "{tier} ({gap} {} to {})",
            unit(program),
            program.tier(next).name
        ),
        None => format!("{tier} (top tier)"),
    }
}

fn unit(program: &Program) -> &'static str {
    match program.tier_measure {
        tillpass::domain::program::TierMeasure::Points => "points",
        tillpass::domain::program::TierMeasure::Spend => "minor units of spend",
    }
}

fn entry_line(program: &Program, e: &Entry) -> String {
    let amount = e
        .amount_minor
        .map(|a| match e.kind {
            tillpass::domain::EntryKind::Return => format!("  refund {}", program.format_money(-a)),
            _ => format!("  sale {}", program.format_money(a)),
        })
        .unwrap_or_default();
    let reward = e
        .reward_id
        .as_ref()
        .and_then(|r| match e.kind {
            tillpass::domain::EntryKind::Redeem => program.reward(r).map(|r| r.name.clone()),
            tillpass::domain::EntryKind::Donation => program.cause(r).map(|c| c.name.clone()),
            _ => None,
        })
        .map(|name| format!("  {name}"))
        .unwrap_or_default();
    let stamps: String = e
        .stamps
        .iter()
        .map(|(card, n)| {
            let name = program
                .stamp_card(card)
                .map_or(card.as_str(), |c| c.name.as_str());
            format!("  {n:+} {name} stamps")
        })
        .collect();
    format!(
        "{}  {:<14} {:>+7}{amount}{reward}{stamps}  {}",
        e.occurred_at,
        e.kind.label(),
        e.points,
        e.id
    )
}

impl Out {
    pub fn guest_sale(&self, program: &Program, amount_minor: i64) -> Result<()> {
        if self.json {
            return print_json(
                &json!({ "guest_sale": amount_minor, "currency": program.currency }),
            );
        }
        say!(
            "Recorded a sale of {} without a member",
            program.format_money(amount_minor)
        );
        Ok(())
    }

    pub fn report(&self, program: &Program, report: &Report, csv: bool) -> Result<()> {
        if self.json {
            return print_json(report);
        }
        if csv {
            let mut writer = csv::Writer::from_writer(Vec::new());
            writer.write_record(["key", "measure", "value", "unit", "formula"])?;
            for m in &report.measures {
                let value = m.value.map(|v| v.to_string()).unwrap_or_default();
                let unit = match m.unit {
                    Unit::Count => "count",
                    Unit::Rate => "rate",
                    Unit::MinorUnits => "minor units",
                    Unit::Number => "number",
                };
                writer.write_record([m.key, m.name, &value, unit, &m.formula])?;
            }
            say!("{}", String::from_utf8(writer.into_inner()?)?.trim_end());
            return Ok(());
        }
        say!(
            "{}: {} to {} (UTC, the last day not included)",
            program.name,
            report.from,
            report.to
        );
        for m in &report.measures {
            say!("  {:<34} {:>14}", m.name, m.value_text(program));
            say!("      {}", m.formula);
        }
        if !report.cohorts.is_empty() {
            say!("Retention by enrolment month (share buying in each month since):");
            for c in &report.cohorts {
                let rates: Vec<String> = (0..c.active.len())
                    .filter_map(|k| c.rate(k))
                    .map(|r| format!("{:>4.0}%", r * 100.0))
                    .collect();
                say!("  {} {:>6} members {}", c.month, c.members, rates.join(" "));
            }
        }
        Ok(())
    }

    pub fn status(&self, stats: &StoreStats) -> Result<()> {
        if self.json {
            return print_json(stats);
        }
        say!("Database:  {}", stats.path.display());
        say!("Terminal:  {}", stats.terminal_id);
        say!(
            "Program:   {} (version {})",
            stats.program,
            stats.program_version
        );
        say!("Members:   {}", stats.members);
        say!("Entries:   {}", stats.entries);
        Ok(())
    }

    pub fn member(&self, program: &Program, view: &MemberView, recent: &[Entry]) -> Result<()> {
        if self.json {
            return print_json(
                &json!({ "member": view.member, "state": view.state, "recent": recent }),
            );
        }
        let m = &view.member;
        say!("{}  card {}", m.name, m.card.grouped());
        if let Some(phone) = &m.phone {
            say!("Phone:    {phone}");
        }
        if let Some(email) = &m.email {
            say!("Email:    {email}");
        }
        if let Some(b) = m.birthday {
            say!("Birthday: {b}");
        }
        say!("Balance:  {} points", view.state.balance);
        say!("Tier:     {}", tier_line(program, view));
        say!("Member since {}", m.created_at.date());
        if !recent.is_empty() {
            say!("Recent:");
            for e in recent {
                say!("  {}", entry_line(program, e));
            }
        }
        Ok(())
    }

    pub fn hits(&self, program: &Program, hits: &[SearchHit]) -> Result<()> {
        if self.json {
            return print_json(&hits);
        }
        if hits.is_empty() {
            say!("No members found.");
        }
        for h in hits {
            let m = &h.view.member;
            say!(
                "{}  {:<28} {:>7} pts  {:<8} {}",
                m.card.grouped(),
                m.name,
                h.view.state.balance,
                program.tier(h.view.state.tier).name,
                m.phone.as_deref().unwrap_or("")
            );
        }
        Ok(())
    }

    pub fn entry_written(&self, store: &Store, e: &Entry) -> Result<()> {
        let view = store.member(e.member_id)?;
        if self.json {
            return print_json(&json!({ "entry": e, "state": view.state }));
        }
        let program = store.program();
        say!("{}", entry_line(program, e));
        say!(
            "{}: balance {} points, {}",
            view.member.name,
            view.state.balance,
            tier_line(program, &view)
        );
        Ok(())
    }

    /// A sale written, with the facts written with it (offers, badges, referral bonuses).
    pub fn sale_written(&self, store: &Store, sale: &Entry, facts: &[Entry]) -> Result<()> {
        if self.json {
            let view = store.member(sale.member_id)?;
            return print_json(&json!({ "entry": sale, "facts": facts, "state": view.state }));
        }
        self.entry_written(store, sale)?;
        for words in store.facts_in_words(facts)? {
            say!("  {words}");
        }
        Ok(())
    }

    pub fn partner_import(&self, report: &tillpass::store::PartnerImport) -> Result<()> {
        if self.json {
            return print_json(report);
        }
        for refused in &report.refused {
            say!("{refused}");
        }
        let verb = if report.written {
            "Recorded"
        } else {
            "Would record"
        };
        if report.refused.is_empty() {
            say!(
                "{verb} {} partner lines, {} points",
                report.lines,
                report.points
            );
        }
        Ok(())
    }

    pub fn reengaged(&self, given: usize) -> Result<()> {
        if self.json {
            return print_json(&json!({ "given": given }));
        }
        say!("Re-engagement offer given to {given} members who stopped buying");
        Ok(())
    }

    pub fn reengagement(&self, given: usize, back: usize) -> Result<()> {
        if self.json {
            return print_json(&json!({ "given": given, "came_back": back }));
        }
        let rate = if given == 0 {
            0.0
        } else {
            100.0 * back as f64 / given as f64
        };
        say!(
            "Re-engagement offers given: {given}; brought back (a purchase while open): {back} ({rate:.0}%)"
        );
        Ok(())
    }

    pub fn causes(&self, program: &Program, totals: &[tillpass::store::CauseTotal]) -> Result<()> {
        if self.json {
            return print_json(&totals);
        }
        for cause in &program.causes {
            let given = totals.iter().find(|t| t.cause == cause.id);
            say!(
                "{:<32} {:>9} points  {:>5} gifts",
                cause.name,
                given.map_or(0, |t| t.points),
                given.map_or(0, |t| t.gifts)
            );
        }
        Ok(())
    }

    pub fn pos_token(&self, token: &str, listen: &str) -> Result<()> {
        if self.json {
            return print_json(&json!({ "token": token, "listen": listen }));
        }
        say!("{token}");
        eprintln!("The till app serves the integration API on {listen} (docs/integration-api.md).");
        Ok(())
    }

    pub fn quote(&self, program: &Program, quote: &Quote) -> Result<()> {
        if self.json {
            return print_json(quote);
        }
        say!(
            "{} earns {} points:",
            program.format_money(quote.amount_minor),
            quote.points
        );
        for step in &quote.steps {
            say!("  {}", step.text);
        }
        Ok(())
    }

    pub fn history(&self, program: &Program, entries: &[Entry]) -> Result<()> {
        if self.json {
            return print_json(&entries);
        }
        for e in entries {
            say!("{}", entry_line(program, e));
        }
        Ok(())
    }

    pub fn tiers(&self, program: &Program, counts: &[i64]) -> Result<()> {
        if self.json {
            let rows: Vec<_> = program
                .tiers
                .iter()
                .zip(counts)
                .map(|(t, n)| {
                    json!({ "tier": t.name, "threshold": t.threshold,
                    "multiplier": f64::from(t.multiplier_hundredths) / 100.0, "members": n })
                })
                .collect();
            return print_json(&rows);
        }
        say!(
            "{:<12} {:>10} {:>10} {:>10}",
            "Tier",
            "Threshold",
            "Multiplier",
            "Members"
        );
        for (t, n) in program.tiers.iter().zip(counts) {
            say!(
                "{:<12} {:>10} {:>9.2}x {:>10}",
                t.name,
                t.threshold,
                f64::from(t.multiplier_hundredths) / 100.0,
                n
            );
        }
        Ok(())
    }

    pub fn verify(&self, report: &VerifyReport) -> Result<()> {
        if self.json {
            return print_json(report);
        }
        say!(
            "Checked {} members and {} entries: {}",
            report.members,
            report.entries,
            if report.is_clean() {
                "no drift".to_owned()
            } else {
                format!("{} problem(s)", report.drift.len())
            }
        );
        for d in report.drift.iter().take(50) {
            say!("  {}", serde_json::to_string(d)?);
        }
        if report.repaired > 0 {
            say!(
                "Repaired {} cached member states from their entries.",
                report.repaired
            );
        }
        for n in &report.notes {
            say!("Note: {n}");
        }
        Ok(())
    }

    pub fn code(&self, view: &MemberView, code: &str) -> Result<()> {
        if self.json {
            return print_json(&json!({ "card": view.member.card, "code": code }));
        }
        say!("{code}");
        Ok(())
    }

    pub fn sync_report(&self, report: &tillpass::sync::SyncReport) -> Result<()> {
        if self.json {
            return print_json(report);
        }
        say!(
            "Pushed {} entries and {} members ({} already on the server); pulled {} entries and {} members.{}",
            report.pushed_entries,
            report.pushed_members,
            report.duplicates,
            report.pulled_entries,
            report.pulled_members,
            if report.program_updated {
                " Installed the server's program."
            } else {
                ""
            }
        );
        if report.server_restored {
            say!("The server was restored from an older copy: pulled everything again.");
        }
        if report.recovered + report.renumbered > 0 {
            say!(
                "This till's file was an older copy: took back {} entries from the server and numbered {} unpushed ones after them.",
                report.recovered,
                report.renumbered
            );
        }
        if report.set_aside > 0 {
            say!(
                "Set aside {} entries made here after that copy was put back, which the server's copy rules out (see `tillpass sync --quarantine`).",
                report.set_aside
            );
        }
        if report.quarantined > 0 {
            say!(
                "Set aside {} pulled records this till cannot apply (see `tillpass sync --quarantine`).",
                report.quarantined
            );
        }
        if report.released > 0 {
            say!(
                "Applied {} records set aside earlier, after the program update.",
                report.released
            );
        }
        Ok(())
    }

    pub fn sync_status(
        &self,
        settings: &tillpass::store::SyncSettings,
        counters: &tillpass::store::SyncCounters,
    ) -> Result<()> {
        if self.json {
            return print_json(&json!({
                "server": settings.server_url,
                "waiting_entries": counters.waiting_entries,
                "waiting_members": counters.waiting_members,
                "pull_cursor": counters.pull_cursor,
                "program_version": counters.program_version,
                "last_success": counters.last_success,
                "last_error": counters.last_error,
                "quarantined": counters.quarantined,
            }));
        }
        say!(
            "Server:   {}",
            settings.server_url.as_deref().unwrap_or("(none)")
        );
        say!(
            "Waiting:  {} entries, {} members",
            counters.waiting_entries,
            counters.waiting_members
        );
        say!(
            "Last ok:  {}",
            counters
                .last_success
                .map_or_else(|| "never".to_owned(), |t| t.to_string())
        );
        if let Some(e) = &counters.last_error {
            say!("Last error: {e}");
        }
        if counters.quarantined > 0 {
            say!(
                "Set aside: {} records (tillpass sync --quarantine)",
                counters.quarantined
            );
        }
        Ok(())
    }

    pub fn import(&self, report: &tillpass::store::ImportReport, source: &str) -> Result<()> {
        if self.json {
            return print_json(report);
        }
        let verb = if report.dry_run {
            "Would import"
        } else {
            "Imported"
        };
        say!(
            "{verb} {} members from {source}, {} with opening balances totalling {} points.{}",
            report.members,
            report.balances,
            report.points,
            if report.dry_run {
                " Nothing was written."
            } else {
                ""
            }
        );
        Ok(())
    }

    /// A document that is JSON whatever `--json` says (a member's data export).
    pub fn document(&self, text: &str) -> Result<()> {
        say!("{text}");
        Ok(())
    }

    pub fn quarantine(&self, records: &[tillpass::store::Quarantined]) -> Result<()> {
        if self.json {
            return print_json(&records);
        }
        if records.is_empty() {
            say!("No record is set aside.");
        }
        for q in records {
            say!("{}  {}\n    {}", q.at, q.record, q.reason);
        }
        Ok(())
    }

    pub fn double_spends(&self, list: &tillpass::sync::protocol::DoubleSpendList) -> Result<()> {
        if self.json {
            return print_json(list);
        }
        if list.double_spends.is_empty() {
            say!("No double spends.");
        }
        for d in &list.double_spends {
            say!(
                "{}  {} (card {})  redeemed {} points at {} on {}; balance then {}",
                d.occurred_at.date(),
                d.name,
                d.card.grouped(),
                -d.points,
                d.terminal_id,
                d.occurred_at,
                d.balance_after
            );
        }
        Ok(())
    }

    pub fn pass_written(
        &self,
        view: &MemberView,
        file: &std::path::Path,
        demo: bool,
    ) -> Result<()> {
        if self.json {
            return print_json(&json!({ "card": view.member.card, "file": file, "demo": demo }));
        }
        say!("Wrote {} for {}", file.display(), view.member.name);
        Ok(())
    }

    pub fn save_url(&self, view: &MemberView, url: &str, demo: bool) -> Result<()> {
        if self.json {
            return print_json(&json!({ "card": view.member.card, "url": url, "demo": demo }));
        }
        say!("{url}");
        Ok(())
    }

    pub fn demo(&self, report: &DemoReport) -> Result<()> {
        if self.json {
            return print_json(report);
        }
        say!(
            "Loaded {} demo members with {} entries, {} sales without a member and {} answers \
             to the recommend question in {:.1} s.",
            report.members,
            report.entries,
            report.guest_sales,
            report.answers,
            report.seconds
        );
        Ok(())
    }

    pub fn program(&self, program: &Program, toml: &str) -> Result<()> {
        if self.json {
            return print_json(program);
        }
        say!("{}", toml.trim_end());
        Ok(())
    }
}
