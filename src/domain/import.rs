//! Members brought over from another loyalty system: a CSV file read into checked rows, line by
//! line, with the line number and the reason for every bad one. Pure: the caller reads the file.
//!
//! Columns are found by their header, case and spacing aside. Ours: `name` (or `first_name` and
//! `last_name`), `phone`, `email`, `birthday` (YYYY-MM-DD, or MM-DD-YYYY), `balance` (whole
//! points), `joined` (YYYY-MM-DD, optionally with a time), `marketing` (yes/no, true/false,
//! 1/0). The customer exports of Square ("First Name", "Last Name", "Email Address", "Phone
//! Number", "Birthday", "Creation Date", "Email Subscription Status") and Loyverse ("Customer
//! name", "Email", "Phone", "Points balance", "First visit") are recognised by their own names.

use thiserror::Error;

use super::entry::MAX_ENTRY_POINTS;
use super::{MemberInput, Timestamp};

/// Longest file read (about 100,000 members of a typical export fit many times over).
pub const MAX_FILE_BYTES: usize = 200 * 1024 * 1024;

/// One member to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    /// The line in the file (the header is line 1).
    pub line: usize,
    pub input: MemberInput,
    /// The points they bring (0: none).
    pub balance: i64,
    /// When they joined the other system; the import time when absent.
    pub joined: Option<Timestamp>,
}

/// A bad line: its number and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {reason}")]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

/// Why a file cannot be imported at all, or which lines are bad.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ImportError {
    #[error("{0}")]
    File(String),
    #[error("{} bad lines; nothing was imported. {}", .0.len(), summary(.0))]
    Lines(Vec<LineError>),
}

fn summary(errors: &[LineError]) -> String {
    let shown: Vec<String> = errors.iter().take(5).map(ToString::to_string).collect();
    let more = errors.len().saturating_sub(5);
    if more > 0 {
        format!("{}; and {more} more", shown.join("; "))
    } else {
        shown.join("; ")
    }
}

/// Which export a file came from, told by its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Tillpass,
    Square,
    Loyverse,
}

impl Source {
    /// How the source is named in notes and messages.
    pub fn name(self) -> &'static str {
        match self {
            Source::Tillpass => "a member file",
            Source::Square => "a Square customer export",
            Source::Loyverse => "a Loyverse customer export",
        }
    }
}

/// Where each field is in a row.
#[derive(Debug, Default)]
struct Columns {
    name: Option<usize>,
    first: Option<usize>,
    last: Option<usize>,
    phone: Option<usize>,
    email: Option<usize>,
    birthday: Option<usize>,
    balance: Option<usize>,
    joined: Option<usize>,
    marketing: Option<usize>,
}

/// A header cell as compared: lower case, words joined by `_`.
fn key(header: &str) -> String {
    header
        .trim()
        .trim_start_matches('\u{feff}')
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

fn columns(headers: &[String]) -> (Columns, Source) {
    let mut c = Columns::default();
    let mut source = Source::Tillpass;
    for (i, h) in headers.iter().enumerate() {
        let slot = match key(h).as_str() {
            "name" | "full_name" | "customer_name" => &mut c.name,
            "first_name" => &mut c.first,
            "last_name" | "surname" => &mut c.last,
            "phone" | "phone_number" | "mobile" => &mut c.phone,
            "email" | "email_address" => &mut c.email,
            "birthday" | "date_of_birth" => &mut c.birthday,
            "balance" | "points" | "points_balance" | "loyalty_points" | "loyalty_balance" => {
                &mut c.balance
            }
            "joined" | "creation_date" | "first_visit" | "created" => &mut c.joined,
            "marketing" | "email_subscription_status" | "accepts_marketing" => &mut c.marketing,
            _ => continue,
        };
        *slot = Some(i);
        match key(h).as_str() {
            "email_subscription_status" | "creation_date" | "email_address" => {
                source = Source::Square;
            }
            "customer_name" | "points_balance" | "first_visit" => source = Source::Loyverse,
            _ => {}
        }
    }
    (c, source)
}

/// A member file as read: the good rows, the bad lines with their reasons, and the source the
/// header says. An import goes ahead only when no line is bad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub rows: Vec<ImportRow>,
    pub errors: Vec<LineError>,
    pub source: Source,
}

/// Reads a member file, checking every line. Refused whole only when the file itself cannot be
/// read or has no name column.
pub fn read(bytes: &[u8]) -> Result<Parsed, ImportError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(ImportError::File(format!(
            "the file is over {} MB; split it",
            MAX_FILE_BYTES / 1024 / 1024
        )));
    }
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| ImportError::File(format!("the header line cannot be read: {e}")))?
        .iter()
        .map(str::to_owned)
        .collect();
    let (cols, source) = columns(&headers);
    if cols.name.is_none() && cols.first.is_none() && cols.last.is_none() {
        return Err(ImportError::File(format!(
            "no name column: the header needs `name` (or `first_name` and `last_name`); it has {}",
            headers.join(", ")
        )));
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(LineError {
                    line,
                    reason: format!("cannot be read as CSV ({e})"),
                });
                continue;
            }
        };
        if record.iter().all(str::is_empty) {
            continue;
        }
        match row(&cols, &record, line) {
            Ok(r) => rows.push(r),
            Err(reason) => errors.push(LineError { line, reason }),
        }
    }
    Ok(Parsed {
        rows,
        errors,
        source,
    })
}

fn row(cols: &Columns, record: &csv::StringRecord, line: usize) -> Result<ImportRow, String> {
    let get = |c: Option<usize>| {
        c.and_then(|i| record.get(i))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let name = match get(cols.name) {
        Some(name) => name.to_owned(),
        None => [get(cols.first), get(cols.last)]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
    };
    if name.is_empty() {
        return Err("name: empty".into());
    }
    let balance = match get(cols.balance) {
        None => 0,
        Some(text) => parse_points(text).ok_or_else(|| {
            format!(
                "balance: {text:?} is not a whole number of points from 0 to {MAX_ENTRY_POINTS}"
            )
        })?,
    };
    let joined = get(cols.joined)
        .map(|text| parse_when(text).ok_or_else(|| format!("joined: {text:?} is not a date")))
        .transpose()?;
    let birthday = get(cols.birthday)
        .map(|text| {
            parse_day(text)
                .map(|d| d.to_string())
                .ok_or_else(|| format!("birthday: {text:?} is not a date like 1990-04-25"))
        })
        .transpose()?;
    let marketing = match get(cols.marketing).map(str::to_lowercase).as_deref() {
        None | Some("no" | "false" | "0" | "unsubscribed" | "unknown") => false,
        Some("yes" | "true" | "1" | "subscribed") => true,
        Some(other) => return Err(format!("marketing: {other:?} is not yes or no")),
    };
    Ok(ImportRow {
        line,
        input: MemberInput {
            name,
            phone: get(cols.phone).map(str::to_owned),
            email: get(cols.email).map(str::to_owned),
            birthday,
            marketing_consent: marketing,
            referred_by: None,
        },
        balance,
        joined,
    })
}

/// Whole points, with thousands separators allowed (`1,250`); a `.0` from a spreadsheet too.
fn parse_points(text: &str) -> Option<i64> {
    let digits: String = text.chars().filter(|c| *c != ',' && *c != ' ').collect();
    let whole = digits.strip_suffix(".0").unwrap_or(&digits);
    whole
        .parse::<i64>()
        .ok()
        .filter(|p| (0..=MAX_ENTRY_POINTS).contains(p))
}

/// A calendar day: YYYY-MM-DD, or MM-DD-YYYY / MM/DD/YYYY as Square writes them.
fn parse_day(text: &str) -> Option<time::Date> {
    let text = text.trim();
    let iso = time::macros::format_description!("[year]-[month]-[day]");
    let us = time::macros::format_description!("[month]-[day]-[year]");
    time::Date::parse(text, &iso)
        .or_else(|_| time::Date::parse(&text.replace('/', "-"), &us))
        .ok()
}

/// When someone joined: a day, or a day and a time (taken as UTC).
fn parse_when(text: &str) -> Option<Timestamp> {
    let day_part = text
        .split(['T', ' '])
        .next()
        .unwrap_or_default()
        .trim_end_matches(',');
    let day = parse_day(day_part)?;
    let ms = day.midnight().assume_utc().unix_timestamp() * 1000;
    Some(Timestamp::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_columns_are_read_and_bad_lines_named() {
        let file = "name,phone,email,birthday,balance,joined,marketing\n\
                    Ada Lovelace,07400 123456,ada@example.com,1990-12-10,\"1,250\",2024-03-01,yes\n\
                    Bo Peep,,,,0,,\n\
                    ,,,,,,\n\
                    Cy Young,,,,-5,,\n\
                    Di Prince,,,not a date,10,,\n";
        let parsed = read(file.as_bytes()).expect("read");
        let lines = parsed.errors;
        assert_eq!(lines.iter().map(|l| l.line).collect::<Vec<_>>(), vec![5, 6]);
        assert!(lines[0].reason.starts_with("balance:"), "{lines:?}");
        assert!(lines[1].reason.starts_with("birthday:"), "{lines:?}");

        let good: String = file.lines().take(3).map(|l| format!("{l}\n")).collect();
        let Parsed { rows, source, .. } = read(good.as_bytes()).expect("read");
        assert_eq!(source, Source::Tillpass);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].balance, 1250);
        assert_eq!(rows[0].input.birthday.as_deref(), Some("1990-12-10"));
        assert!(rows[0].input.marketing_consent);
        assert_eq!(
            rows[0].joined,
            Some(Timestamp::from_millis(1_709_251_200_000))
        );
        assert_eq!(rows[1].line, 3);
    }

    #[test]
    fn square_and_loyverse_exports_are_recognised() {
        let square = "First Name,Last Name,Email Address,Phone Number,Birthday,Creation Date,Email Subscription Status\n\
                      Ada,Lovelace,ada@example.com,+44 7400 123456,12-10-1990,2023-05-04,Subscribed\n";
        let Parsed { rows, source, .. } = read(square.as_bytes()).expect("square");
        assert_eq!(source, Source::Square);
        assert_eq!(rows[0].input.name, "Ada Lovelace");
        assert_eq!(rows[0].input.birthday.as_deref(), Some("1990-12-10"));
        assert!(rows[0].input.marketing_consent);

        let loyverse = "\u{feff}Customer name,Email,Phone,Points balance,First visit,Note\n\
                        Bo Peep,bo@example.com,07400 000111,75.0,2022-01-02 10:11,regular\n";
        let Parsed { rows, source, .. } = read(loyverse.as_bytes()).expect("loyverse");
        assert_eq!(source, Source::Loyverse);
        assert_eq!(
            (rows[0].input.name.as_str(), rows[0].balance),
            ("Bo Peep", 75)
        );
        assert!(rows[0].joined.is_some());
    }

    #[test]
    fn a_file_without_names_is_refused_whole() {
        let err = read(b"phone,email\n07400,a@b.c\n").expect_err("no name");
        assert!(err.to_string().contains("no name column"), "{err}");
    }
}
