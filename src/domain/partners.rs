//! Partner earning: points members earn with the program's partners (a cinema, a bakery next
//! door), sent as a file of lines (card, partner, points, reference) and recorded as
//! `partner_earn` entries naming the partner, with the partner's reference as the note.
//!
//! A partner's line is earned once: if two tills import the same file apart, the earliest entry
//! for a (partner, reference) stands and the till that wrote a later one reverses it when it
//! sees the first, as with badges.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::program::{ConfigError, MAX_REWARD_COST, short_name, stable_id};
use super::{CardNumber, Entry, EntryId, EntryKind, MemberId, Program};

/// A partner of the program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partner {
    pub id: String,
    pub name: String,
    /// Most points one line may give.
    pub max_points: i64,
}

/// `[[partners]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPartner {
    id: String,
    name: String,
    max_points: i64,
}

/// Validates `[[partners]]`.
pub(super) fn partners(raw: Vec<RawPartner>) -> Result<Vec<Partner>, ConfigError> {
    let mut out: Vec<Partner> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("partners[{i}].{f}");
        let id = stable_id(&at("id"), &r.id, out.iter().map(|x| x.id.as_str()))?;
        let name = short_name(&at("name"), &r.name)?;
        if !(1..=MAX_REWARD_COST).contains(&r.max_points) {
            return Err(ConfigError::field(
                at("max_points"),
                format!(
                    "must be between 1 and {MAX_REWARD_COST}, got {}",
                    r.max_points
                ),
            ));
        }
        out.push(Partner {
            id,
            name,
            max_points: r.max_points,
        });
    }
    Ok(out)
}

/// One line of a partner file, read and checked on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerLine {
    /// The line's number in the file (from 1, the header is line 1 of a CSV file).
    pub line: usize,
    pub card: CardNumber,
    pub partner: String,
    pub points: i64,
    /// The partner's own reference for the line (a ticket or receipt number), unique per partner.
    pub reference: String,
}

/// A line as written, in CSV (with a header) or JSON (an array of objects).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    card: String,
    partner: String,
    points: i64,
    reference: String,
}

/// Why a partner file or one of its lines is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct PartnerLineError {
    pub line: usize,
    pub reason: String,
}

/// Reads a partner file: JSON when it starts with `[`, CSV with a header otherwise. Every line
/// comes back, good or with the reason it is refused (checked against `program`).
pub fn read(program: &Program, bytes: &[u8]) -> Vec<Result<PartnerLine, PartnerLineError>> {
    let text = String::from_utf8_lossy(bytes);
    let raw: Vec<(usize, Result<RawLine, String>)> = if text.trim_start().starts_with('[') {
        match serde_json::from_str::<Vec<serde_json::Value>>(&text) {
            Err(e) => vec![(1, Err(format!("not a JSON array of lines: {e}")))],
            Ok(values) => values
                .into_iter()
                .enumerate()
                .map(|(i, v)| (i + 1, serde_json::from_value(v).map_err(|e| e.to_string())))
                .collect(),
        }
    } else {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        reader
            .deserialize::<RawLine>()
            .enumerate()
            .map(|(i, r)| (i + 2, r.map_err(|e| e.to_string())))
            .collect()
    };
    raw.into_iter()
        .map(|(line, r)| {
            let fail = |reason: String| PartnerLineError { line, reason };
            let r = r.map_err(fail)?;
            let card: CardNumber = r
                .card
                .trim()
                .parse()
                .map_err(|e| fail(format!("card {:?}: {e}", r.card)))?;
            let partner = program.partner(r.partner.trim()).ok_or_else(|| {
                fail(format!(
                    "{:?} is not one of the program's partners",
                    r.partner
                ))
            })?;
            if !(1..=partner.max_points).contains(&r.points) {
                return Err(fail(format!(
                    "{} points: {} gives 1 to {} a line",
                    r.points, partner.name, partner.max_points
                )));
            }
            let reference = r.reference.trim().to_owned();
            if reference.is_empty() || reference.len() > 80 {
                return Err(fail("the reference must be 1-80 characters".to_owned()));
            }
            Ok(PartnerLine {
                line,
                card,
                partner: partner.id.clone(),
                points: r.points,
                reference,
            })
        })
        .collect()
}

/// The note a partner entry carries: the partner's reference.
pub fn note(reference: &str) -> String {
    format!("partner reference {reference}")
}

/// What a partner file import found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PartnerImport {
    /// Good lines, and their points.
    pub lines: usize,
    pub points: i64,
    /// Refused lines with their reasons; any makes the import write nothing.
    pub refused: Vec<PartnerLineError>,
    /// Whether the lines were written.
    pub written: bool,
}

/// A file's good lines, each with its member, and the report so far.
pub type SortedLines<'l> = (Vec<(MemberId, &'l PartnerLine)>, PartnerImport);

/// Sorts a file's lines into the good ones, each with its member, and the refused ones with
/// why: a line already refused, a card no member holds (`member_of` finds a card's member and
/// their entries), a reference twice in the file or recorded before.
pub fn sort_lines<E>(
    lines: &[Result<PartnerLine, PartnerLineError>],
    mut member_of: impl FnMut(&CardNumber) -> Result<Option<(MemberId, Vec<Entry>)>, E>,
) -> Result<SortedLines<'_>, E> {
    let mut report = PartnerImport::default();
    let mut good = Vec::new();
    let mut seen = BTreeSet::new();
    for line in lines {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                report.refused.push(e.clone());
                continue;
            }
        };
        let fail = |reason: String| PartnerLineError {
            line: line.line,
            reason,
        };
        let Some((member, entries)) = member_of(&line.card)? else {
            report.refused.push(fail(format!(
                "no member holds card {}",
                line.card.grouped()
            )));
            continue;
        };
        if !seen.insert((line.partner.clone(), line.reference.clone())) {
            report.refused.push(fail(format!(
                "reference {} is in the file twice",
                line.reference
            )));
            continue;
        }
        if earned(&entries, &line.partner, &line.reference) {
            report.refused.push(fail(format!(
                "reference {} was recorded before",
                line.reference
            )));
            continue;
        }
        report.lines += 1;
        report.points += line.points;
        good.push((member, line));
    }
    Ok((good, report))
}

/// Whether `entries` already hold a standing entry for this (partner, reference).
pub fn earned(entries: &[Entry], partner: &str, reference: &str) -> bool {
    let note = note(reference);
    let reversed: BTreeSet<EntryId> = entries.iter().filter_map(|e| e.reverses).collect();
    entries.iter().any(|e| {
        e.kind == EntryKind::PartnerEarn
            && e.reward_id.as_deref() == Some(partner)
            && e.note.as_deref() == Some(note.as_str())
            && !reversed.contains(&e.id)
    })
}

/// Partner entries that do not stand: another for the same (partner, reference) came first
/// (by time, then id), and they are not reversed yet.
pub fn duplicates(entries: &[Entry]) -> Vec<&Entry> {
    let reversed: BTreeSet<EntryId> = entries.iter().filter_map(|e| e.reverses).collect();
    let mut lines: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::PartnerEarn && !reversed.contains(&e.id))
        .collect();
    lines.sort_by_key(|e| (e.occurred_at, e.id));
    let mut seen = BTreeSet::new();
    lines
        .into_iter()
        .filter(|e| !seen.insert((e.reward_id.clone(), e.note.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_checked_one_by_one_in_csv_and_json() {
        let p = Program::demo();
        let csv = "card,partner,points,reference\n\
                   0000000000,cinema,200,T-1\n\
                   0000000000,moon-base,10,T-2\n\
                   0000000000,cinema,999999,T-3\n\
                   12,cinema,10,T-4\n";
        let lines = read(&p, csv.as_bytes());
        assert_eq!(lines.len(), 4);
        let good = lines[0].as_ref().expect("line 2");
        assert_eq!(
            (good.line, good.points, good.partner.as_str()),
            (2, 200, "cinema")
        );
        let reasons: Vec<String> = lines[1..]
            .iter()
            .map(|l| l.as_ref().expect_err("bad").to_string())
            .collect();
        assert!(
            reasons[0].starts_with("line 3: \"moon-base\" is not one of"),
            "{reasons:?}"
        );
        assert!(
            reasons[1].starts_with("line 4: 999999 points"),
            "{reasons:?}"
        );
        assert!(reasons[2].starts_with("line 5: card"), "{reasons:?}");
        let json =
            r#"[{"card": "0000000000", "partner": "cinema", "points": 50, "reference": "R9"}]"#;
        let lines = read(&p, json.as_bytes());
        assert_eq!(lines[0].as_ref().map(|l| l.points), Ok(50));
    }
}
