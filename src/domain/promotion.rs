//! Earning beyond the base rate: category multipliers, excluded categories and promotions in
//! time windows ("double points this weekend", "spend 20, get 100 points"), read from the
//! program's `[earn]` and `[[promotions]]` tables.

use jiff::civil::{DateTime, Weekday};
use serde::{Deserialize, Serialize};

use super::program::{ConfigError, MAX_MULTIPLIER_HUNDREDTHS, MAX_REWARD_COST, Tier, hundredths};

/// A category that earns at a multiple of the base rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CategoryRate {
    pub category: String,
    /// In hundredths: 200 means x2.
    pub multiplier_hundredths: u32,
}

/// What a promotion gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionEffect {
    /// The lines it covers earn at this multiple (hundredths), on top of tier and category.
    /// When several apply to a line, the largest counts: multipliers never stack.
    Multiplier(u32),
    /// Fixed points once per sale whose covered lines come to at least `min_spend_minor`.
    Bonus { points: i64, min_spend_minor: i64 },
}

/// A promotion and the window it runs in, in the program's time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Promotion {
    pub id: String,
    pub name: String,
    /// First and last day it runs (inclusive); open-ended when absent.
    pub from: Option<time::Date>,
    pub until: Option<time::Date>,
    /// Days of the week it runs, Monday = 0; every day when empty.
    pub days: Vec<u8>,
    /// Minutes after midnight it starts and stops (stop excluded); all day when absent.
    pub hours: Option<(u16, u16)>,
    /// Tier indexes it is for; every tier when empty.
    pub tiers: Vec<usize>,
    /// Categories it covers; every earning line when empty.
    pub categories: Vec<String>,
    pub effect: PromotionEffect,
}

impl Promotion {
    /// Whether it runs at `local` (the program's local time) for a member in `tier`.
    pub fn runs(&self, local: DateTime, tier: usize) -> bool {
        let date = local.date();
        let day = time::Date::from_calendar_date(
            i32::from(date.year()),
            time::Month::try_from(u8::try_from(date.month()).unwrap_or(1))
                .unwrap_or(time::Month::January),
            u8::try_from(date.day()).unwrap_or(1),
        );
        let Ok(day) = day else { return false };
        let weekday = u8::try_from(local.weekday().to_monday_zero_offset()).unwrap_or(0);
        let minute =
            u16::try_from(i32::from(local.hour()) * 60 + i32::from(local.minute())).unwrap_or(0);
        self.from.is_none_or(|f| day >= f)
            && self.until.is_none_or(|u| day <= u)
            && (self.days.is_empty() || self.days.contains(&weekday))
            && self
                .hours
                .is_none_or(|(start, stop)| minute >= start && minute < stop)
            && (self.tiers.is_empty() || self.tiers.contains(&tier))
    }

    /// Whether it covers a line of `category`.
    pub fn covers(&self, category: &str) -> bool {
        self.categories.is_empty()
            || self
                .categories
                .iter()
                .any(|c| c.eq_ignore_ascii_case(category))
    }
}

/// `[[earn.categories]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCategoryRate {
    id: String,
    multiplier: f64,
}

/// `[[promotions]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPromotion {
    id: String,
    name: String,
    from: Option<String>,
    until: Option<String>,
    #[serde(default)]
    days: Vec<String>,
    hours: Option<String>,
    #[serde(default)]
    tiers: Vec<String>,
    #[serde(default)]
    categories: Vec<String>,
    multiplier: Option<f64>,
    bonus: Option<i64>,
    min_spend: Option<f64>,
}

fn category_name(field: &str, text: &str) -> Result<String, ConfigError> {
    let name = text.trim().to_ascii_lowercase();
    if name.is_empty() || name.len() > super::basket::MAX_CODE_LEN {
        return Err(ConfigError::field(
            field,
            format!("a category is 1-40 characters, got {text:?}"),
        ));
    }
    Ok(name)
}

fn multiplier(field: &str, value: f64) -> Result<u32, ConfigError> {
    hundredths(value)
        .filter(|m| (1..=MAX_MULTIPLIER_HUNDREDTHS).contains(m))
        .ok_or_else(|| {
            ConfigError::field(
                field,
                format!(
                    "must be between 0.01 and {} with at most two decimals, got {value}",
                    MAX_MULTIPLIER_HUNDREDTHS / 100
                ),
            )
        })
}

/// Validates `[[earn.categories]]`.
pub(super) fn category_rates(raw: Vec<RawCategoryRate>) -> Result<Vec<CategoryRate>, ConfigError> {
    let mut rates: Vec<CategoryRate> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("earn.categories[{i}].{f}");
        let category = category_name(&at("id"), &r.id)?;
        if rates.iter().any(|c| c.category == category) {
            return Err(ConfigError::field(
                at("id"),
                format!("{category:?} is used twice"),
            ));
        }
        rates.push(CategoryRate {
            category,
            multiplier_hundredths: multiplier(&at("multiplier"), r.multiplier)?,
        });
    }
    Ok(rates)
}

/// Validates `earn.excluded_categories`.
pub(super) fn excluded(raw: Vec<String>) -> Result<Vec<String>, ConfigError> {
    raw.iter()
        .enumerate()
        .map(|(i, c)| category_name(&format!("earn.excluded_categories[{i}]"), c))
        .collect()
}

fn date(field: &str, text: Option<String>) -> Result<Option<time::Date>, ConfigError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    text.map(|t| {
        time::Date::parse(t.trim(), &format).map_err(|_| {
            ConfigError::field(
                field,
                format!("must be a date such as 2026-12-24, got {t:?}"),
            )
        })
    })
    .transpose()
}

fn weekday(field: &str, text: &str) -> Result<u8, ConfigError> {
    let day = match text.trim().to_ascii_lowercase().get(..3) {
        Some("mon") => Weekday::Monday,
        Some("tue") => Weekday::Tuesday,
        Some("wed") => Weekday::Wednesday,
        Some("thu") => Weekday::Thursday,
        Some("fri") => Weekday::Friday,
        Some("sat") => Weekday::Saturday,
        Some("sun") => Weekday::Sunday,
        _ => {
            return Err(ConfigError::field(
                field,
                format!("must be a day such as \"sat\", got {text:?}"),
            ));
        }
    };
    Ok(u8::try_from(day.to_monday_zero_offset()).unwrap_or(0))
}

fn hours(field: &str, text: &str) -> Result<(u16, u16), ConfigError> {
    let fail = || {
        ConfigError::field(
            field,
            format!("must be a time range such as \"07:00-11:00\", got {text:?}"),
        )
    };
    let minute = |t: &str| -> Option<u16> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
    };
    let (start, stop) = text.split_once('-').ok_or_else(fail)?;
    let (start, stop) = (
        minute(start).ok_or_else(fail)?,
        minute(stop).ok_or_else(fail)?,
    );
    if start >= stop {
        return Err(ConfigError::field(
            field,
            format!("must start before it stops, got {text:?}"),
        ));
    }
    Ok((start, stop))
}

/// Validates `[[promotions]]` against the tiers already read.
pub(super) fn promotions(
    raw: Vec<RawPromotion>,
    tiers: &[Tier],
    scale: f64,
) -> Result<Vec<Promotion>, ConfigError> {
    let mut out: Vec<Promotion> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("promotions[{i}].{f}");
        let id = r.id.trim().to_owned();
        if id.is_empty() || id.len() > 40 {
            return Err(ConfigError::field(
                at("id"),
                format!("must be 1-40 characters, got {id:?}"),
            ));
        }
        if out.iter().any(|p| p.id == id) {
            return Err(ConfigError::field(
                at("id"),
                format!("{id:?} is used twice"),
            ));
        }
        let name = r.name.trim().to_owned();
        if name.is_empty() || name.len() > 80 {
            return Err(ConfigError::field(at("name"), "must be 1-80 characters"));
        }
        let from = date(&at("from"), r.from)?;
        let until = date(&at("until"), r.until)?;
        if let (Some(f), Some(u)) = (from, until)
            && u < f
        {
            return Err(ConfigError::field(at("until"), "must not be before from"));
        }
        let mut days = r
            .days
            .iter()
            .map(|d| weekday(&at("days"), d))
            .collect::<Result<Vec<_>, _>>()?;
        days.sort_unstable();
        days.dedup();
        let hours = r.hours.map(|h| hours(&at("hours"), &h)).transpose()?;
        let tiers = r
            .tiers
            .iter()
            .map(|name| {
                tiers
                    .iter()
                    .position(|t| t.name.eq_ignore_ascii_case(name.trim()))
                    .ok_or_else(|| {
                        ConfigError::field(at("tiers"), format!("{name:?} is not one of the tiers"))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let categories = r
            .categories
            .iter()
            .map(|c| category_name(&at("categories"), c))
            .collect::<Result<Vec<_>, _>>()?;
        let effect = match (r.multiplier, r.bonus) {
            (Some(m), None) if r.min_spend.is_none() => {
                PromotionEffect::Multiplier(multiplier(&at("multiplier"), m)?)
            }
            (Some(_), None) => {
                return Err(ConfigError::field(
                    at("min_spend"),
                    "only a bonus has a minimum spend",
                ));
            }
            (None, Some(points)) => {
                let points = if (1..=MAX_REWARD_COST).contains(&points) {
                    points
                } else {
                    return Err(ConfigError::field(
                        at("bonus"),
                        format!("must be between 1 and {MAX_REWARD_COST}, got {points}"),
                    ));
                };
                let spend = (r.min_spend.unwrap_or(0.0) * scale).round();
                if !spend.is_finite() || !(0.0..=1e12).contains(&spend) {
                    return Err(ConfigError::field(
                        at("min_spend"),
                        "must be an amount of 0 or more",
                    ));
                }
                // Range-checked just above, so the conversion is exact.
                let min_spend_minor = spend as i64;
                PromotionEffect::Bonus {
                    points,
                    min_spend_minor,
                }
            }
            _ => {
                return Err(ConfigError::field(
                    at("multiplier"),
                    "a promotion has either a multiplier or a bonus",
                ));
            }
        };
        out.push(Promotion {
            id,
            name,
            from,
            until,
            days,
            hours,
            tiers,
            categories,
            effect,
        });
    }
    Ok(out)
}
