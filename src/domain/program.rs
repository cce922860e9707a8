//! The loyalty program a manager configures: currency, earning, tiers, rewards, bonuses, expiry.
//!
//! Loaded from TOML (see `assets/program.toml`). Every rule is checked when loading; a bad file is
//! refused with a [`ConfigError`] naming the field and the reason, never half-applied.

use phonenumber::country::Id as CountryId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::badges::{self, Badge, RawBadge};
use super::causes::{self, Cause, RawCause};
use super::offers::{self, Offer, RawOffer, RawReengagement, Reengagement};
use super::partners::{self, Partner, RawPartner};
use super::promotion::{self, CategoryRate, Promotion, RawCategoryRate, RawPromotion};
use super::referrals::{self, RawReferral, Referral};
use super::stamps::{self, RawStampCard, StampCard};

/// Largest points value one reward may cost.
pub const MAX_REWARD_COST: i64 = 10_000_000;
/// Largest single sale a program may allow, in minor units.
pub const MAX_SALE_LIMIT_MINOR: i64 = 1_000_000_000_000;
/// Largest earn multiplier a tier may have.
pub const MAX_MULTIPLIER_HUNDREDTHS: u32 = 1_000;

/// A refused program configuration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// The text is not valid TOML, or a value has the wrong type.
    #[error("program config: {field}: {reason}")]
    Invalid { field: String, reason: String },
}

impl ConfigError {
    pub(super) fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The dotted path of the offending field, e.g. `tiers.levels[1].threshold`.
    pub fn field_name(&self) -> &str {
        match self {
            Self::Invalid { field, .. } => field,
        }
    }
}

/// How fractional points are rounded when earning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Towards zero: 9.9 points earns 9. The usual choice: never over-award.
    Down,
    /// Half away from zero: 9.5 earns 10.
    Nearest,
    /// Away from zero: 9.1 earns 10.
    Up,
}

/// What qualifies a member for a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierMeasure {
    /// Points earned on sales in the window (bonuses and redemptions do not count).
    Points,
    /// Money spent in the window, in minor units.
    Spend,
}

/// One tier, from the lowest (threshold 0) up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tier {
    pub name: String,
    /// Qualifying measure needed, in points or minor units.
    pub threshold: i64,
    /// Earn multiplier in hundredths: 125 means x1.25.
    pub multiplier_hundredths: u32,
    /// `#RRGGBB`.
    pub colour: String,
    pub benefits: String,
}

impl Tier {
    /// The colour as RGB bytes.
    pub fn rgb(&self) -> [u8; 3] {
        parse_colour(&self.colour).unwrap_or([128, 128, 128])
    }
}

/// A reward members can buy with points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reward {
    /// Short stable id, e.g. `free-coffee`; recorded on redemption entries.
    pub id: String,
    pub name: String,
    pub cost: i64,
    /// Index into [`Program::tiers`] of the lowest tier allowed to redeem it.
    pub min_tier: usize,
}

/// A validated loyalty program.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Program {
    pub name: String,
    pub organisation: String,
    /// ISO 4217 code, e.g. `GBP`.
    pub currency: String,
    /// Decimal places of the currency (2 for GBP, 0 for JPY).
    pub minor_units: u8,
    /// Default country for phone numbers typed without a country code.
    #[serde(skip)]
    pub country: CountryId,
    pub country_code: String,
    pub points_per_unit: i64,
    pub rounding: Rounding,
    pub max_sale_minor: i64,
    pub tier_measure: TierMeasure,
    pub tier_window_days: i64,
    pub tiers: Vec<Tier>,
    pub rewards: Vec<Reward>,
    pub welcome_bonus: i64,
    pub birthday_bonus: i64,
    /// Points expire after this many days without a purchase or redemption; `None`: never.
    pub expiry_inactivity_days: Option<i64>,
    /// Most points one member may redeem at a till that cannot reach the server, per 24 hours.
    pub offline_redeem_limit: i64,
    /// Most points one manager's adjustment may move either way.
    pub adjust_limit: i64,
    /// A member with no purchase for this many days is at risk of leaving (insights).
    pub churn_days: i64,
    /// What 1,000 outstanding points cost the business, in minor units (points liability).
    pub cost_per_1000_points_minor: i64,
    /// IANA time zone of the shop (`Europe/London`): promotions run by its local time.
    pub timezone: String,
    #[serde(skip)]
    pub zone: jiff::tz::TimeZone,
    /// Categories earning at a multiple of the base rate.
    pub categories: Vec<CategoryRate>,
    /// Categories that earn nothing (gift cards, tobacco), lower case.
    pub excluded_categories: Vec<String>,
    pub promotions: Vec<Promotion>,
    pub stamp_cards: Vec<StampCard>,
    /// Causes members may give points to.
    pub causes: Vec<Cause>,
    /// Offers that unlock after repeat purchases.
    pub offers: Vec<Offer>,
    /// Badges awarded once by rules over the ledger.
    pub badges: Vec<Badge>,
    /// The offer given to members who stopped buying.
    pub reengagement: Option<Reengagement>,
    /// A tier members may buy for a period.
    pub paid_tier: Option<PaidTier>,
    /// Partners whose points members earn.
    pub partners: Vec<Partner>,
    /// The bonus for referring a new member.
    pub referral: Option<Referral>,
    /// Points earned on a sale are pending (not spendable) for this many days, while the sale
    /// may still be returned; `None`: spendable at once.
    pub return_window_days: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProgram {
    name: String,
    organisation: String,
    currency: String,
    minor_units: u8,
    country: String,
    earn: RawEarn,
    tiers: RawTiers,
    #[serde(default)]
    rewards: Vec<RawReward>,
    #[serde(default)]
    bonuses: RawBonuses,
    #[serde(default)]
    expiry: RawExpiry,
    offline: RawOffline,
    #[serde(default)]
    adjustments: RawAdjustments,
    #[serde(default)]
    insights: RawInsights,
    timezone: Option<String>,
    #[serde(default)]
    promotions: Vec<RawPromotion>,
    #[serde(default)]
    stamp_cards: Vec<RawStampCard>,
    #[serde(default)]
    causes: Vec<RawCause>,
    #[serde(default)]
    offers: Vec<RawOffer>,
    #[serde(default)]
    badges: Vec<RawBadge>,
    reengagement: Option<RawReengagement>,
    paid_tier: Option<RawPaidTier>,
    #[serde(default)]
    partners: Vec<RawPartner>,
    referral: Option<RawReferral>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPaidTier {
    tier: String,
    fee: f64,
    days: i64,
}

/// A tier bought at the till: the fee (a sale that earns nothing) grants the tier and its
/// benefits for `days`; buying again before it lapses extends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaidTier {
    /// Index into the tiers.
    pub tier: usize,
    pub fee_minor: i64,
    pub days: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInsights {
    #[serde(default = "default_churn_days")]
    churn_days: i64,
    #[serde(default)]
    cost_per_1000_points: f64,
}

/// Days without a purchase after which a member counts as at risk, unless the program says.
pub const DEFAULT_CHURN_DAYS: i64 = 60;

fn default_churn_days() -> i64 {
    DEFAULT_CHURN_DAYS
}

impl Default for RawInsights {
    fn default() -> Self {
        Self {
            churn_days: DEFAULT_CHURN_DAYS,
            cost_per_1000_points: 0.0,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEarn {
    points_per_unit: i64,
    rounding: Rounding,
    max_sale: f64,
    #[serde(default)]
    categories: Vec<RawCategoryRate>,
    #[serde(default)]
    excluded_categories: Vec<String>,
    #[serde(default)]
    return_window_days: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTiers {
    measure: TierMeasure,
    window_days: i64,
    levels: Vec<RawTier>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    name: String,
    threshold: i64,
    multiplier: f64,
    colour: String,
    #[serde(default)]
    benefits: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReward {
    id: String,
    name: String,
    cost: i64,
    min_tier: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBonuses {
    #[serde(default)]
    welcome: i64,
    #[serde(default)]
    birthday: i64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExpiry {
    inactivity_days: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdjustments {
    #[serde(default = "default_adjust_limit")]
    limit: i64,
}

/// The adjustment limit of a program that names none.
pub const DEFAULT_ADJUST_LIMIT: i64 = 100_000;

fn default_adjust_limit() -> i64 {
    DEFAULT_ADJUST_LIMIT
}

impl Default for RawAdjustments {
    fn default() -> Self {
        Self {
            limit: DEFAULT_ADJUST_LIMIT,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOffline {
    redeem_limit_per_day: i64,
}

/// The demo program shipped with the app (`assets/program.toml`).
pub const DEMO_PROGRAM_TOML: &str = include_str!("../../assets/program.toml");

impl Program {
    /// Parses and validates program TOML.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let de = toml::de::Deserializer::parse(text)
            .map_err(|e| ConfigError::field("(file)", one_line(&e.to_string())))?;
        let raw: RawProgram = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "(file)".to_owned()
            } else {
                path
            };
            ConfigError::field(field, one_line(&e.into_inner().to_string()))
        })?;
        raw.validate()
    }

    /// The shipped demo program.
    pub fn demo() -> Self {
        match Self::from_toml(DEMO_PROGRAM_TOML) {
            Ok(p) => p,
            Err(e) => panic!("the bundled demo program is invalid: {e}"),
        }
    }

    /// An amount in minor units as people read it, e.g. `12.50 GBP`.
    pub fn format_money(&self, minor: i64) -> String {
        super::money::format_money(minor, self.minor_units, &self.currency)
    }

    /// Finds a partner by id.
    pub fn partner(&self, id: &str) -> Option<&Partner> {
        self.partners.iter().find(|p| p.id == id)
    }

    /// Finds a badge by id.
    pub fn badge(&self, id: &str) -> Option<&Badge> {
        self.badges.iter().find(|b| b.id == id)
    }

    /// Finds an offer by id.
    pub fn offer(&self, id: &str) -> Option<&Offer> {
        self.offers.iter().find(|o| o.id == id)
    }

    /// Finds a cause by id.
    pub fn cause(&self, id: &str) -> Option<&Cause> {
        self.causes.iter().find(|c| c.id == id)
    }

    /// Finds a stamp card by id.
    pub fn stamp_card(&self, id: &str) -> Option<&StampCard> {
        self.stamp_cards.iter().find(|c| c.id == id)
    }

    /// Finds a reward by id.
    pub fn reward(&self, id: &str) -> Option<&Reward> {
        self.rewards.iter().find(|r| r.id == id)
    }

    /// The tier a qualifying measure earns: the highest whose threshold it reaches.
    pub fn tier_for(&self, qualifying: i64) -> usize {
        self.tiers
            .iter()
            .rposition(|t| qualifying >= t.threshold)
            .unwrap_or(0)
    }

    /// Finds a tier index by name (case-insensitive).
    pub fn tier_index(&self, name: &str) -> Option<usize> {
        self.tiers
            .iter()
            .position(|t| t.name.eq_ignore_ascii_case(name))
    }

    /// The tier at `index`, clamped to the tiers that exist.
    pub fn tier(&self, index: usize) -> &Tier {
        let last = self.tiers.len().saturating_sub(1);
        &self.tiers[index.min(last)]
    }
}

/// TOML errors span several lines (a source excerpt); keep the message only.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with('|') && !l.contains(" | "))
        .unwrap_or("invalid")
        .to_owned()
}

fn parse_colour(text: &str) -> Option<[u8; 3]> {
    let hex = text.strip_prefix('#')?;
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

pub(super) fn hundredths(value: f64) -> Option<u32> {
    let scaled = value * 100.0;
    let rounded = scaled.round();
    if !value.is_finite() || (scaled - rounded).abs() > 1e-6 || rounded < 0.0 {
        return None;
    }
    // Bounded by the caller's range check before use; the cast is exact for these magnitudes.
    (rounded <= f64::from(u32::MAX)).then_some(rounded as u32)
}

/// A short stable id (recorded on entries): 1-40 characters of a-z, 0-9, - or _, not one of
/// `taken`.
pub(super) fn stable_id<'a>(
    field: &str,
    raw: &str,
    mut taken: impl Iterator<Item = &'a str>,
) -> Result<String, ConfigError> {
    let id = raw.trim().to_owned();
    if id.is_empty()
        || id.len() > 40
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(ConfigError::field(
            field,
            format!("must be 1-40 characters of a-z, 0-9, - or _, got {id:?}"),
        ));
    }
    if taken.any(|t| t == id) {
        return Err(ConfigError::field(field, format!("{id:?} is used twice")));
    }
    Ok(id)
}

/// A name people read: 1-80 characters once trimmed.
pub(super) fn short_name(field: &str, raw: &str) -> Result<String, ConfigError> {
    let name = raw.trim().to_owned();
    if name.is_empty() || name.len() > 80 {
        return Err(ConfigError::field(field, "must be 1-80 characters"));
    }
    Ok(name)
}

fn non_empty(field: &str, text: String) -> Result<String, ConfigError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ConfigError::field(field, "must not be empty"));
    }
    Ok(trimmed.to_owned())
}

fn in_range(field: &str, value: i64, min: i64, max: i64) -> Result<i64, ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::field(
            field,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    Ok(value)
}

impl RawProgram {
    fn validate(self) -> Result<Program, ConfigError> {
        let name = non_empty("name", self.name)?;
        let organisation = non_empty("organisation", self.organisation)?;
        let currency = self.currency.trim().to_owned();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ConfigError::field(
                "currency",
                format!("must be a three-letter ISO 4217 code such as GBP, got {currency:?}"),
            ));
        }
        if self.minor_units > 3 {
            return Err(ConfigError::field(
                "minor_units",
                format!("must be 0 to 3 decimal places, got {}", self.minor_units),
            ));
        }
        let country_code = self.country.trim().to_ascii_uppercase();
        let country: CountryId = country_code.parse().map_err(|_| {
            ConfigError::field(
                "country",
                format!(
                    "{:?} is not a two-letter country code such as GB",
                    self.country
                ),
            )
        })?;

        let points_per_unit =
            in_range("earn.points_per_unit", self.earn.points_per_unit, 1, 10_000)?;
        let scale = 10_f64.powi(i32::from(self.minor_units));
        let max_sale_minor_f = (self.earn.max_sale * scale).round();
        if !self.earn.max_sale.is_finite()
            || max_sale_minor_f < 1.0
            || max_sale_minor_f > MAX_SALE_LIMIT_MINOR as f64
        {
            return Err(ConfigError::field(
                "earn.max_sale",
                format!(
                    "must be a positive amount no larger than {}, got {}",
                    MAX_SALE_LIMIT_MINOR as f64 / scale,
                    self.earn.max_sale
                ),
            ));
        }
        // Range-checked just above, so the conversion is exact.
        let max_sale_minor = max_sale_minor_f as i64;

        let tier_window_days = in_range("tiers.window_days", self.tiers.window_days, 1, 3660)?;
        if self.tiers.levels.is_empty() {
            return Err(ConfigError::field(
                "tiers.levels",
                "at least one tier is needed (the entry tier, threshold 0)",
            ));
        }
        let mut tiers: Vec<Tier> = Vec::with_capacity(self.tiers.levels.len());
        for (i, raw) in self.tiers.levels.into_iter().enumerate() {
            let at = |f: &str| format!("tiers.levels[{i}].{f}");
            let name = non_empty(&at("name"), raw.name)?;
            if tiers.iter().any(|t| t.name.eq_ignore_ascii_case(&name)) {
                return Err(ConfigError::field(
                    at("name"),
                    format!("{name:?} is used twice"),
                ));
            }
            let threshold = raw.threshold;
            match tiers.last() {
                None if threshold != 0 => {
                    return Err(ConfigError::field(
                        at("threshold"),
                        format!(
                            "the first tier is where every member starts: must be 0, got {threshold}"
                        ),
                    ));
                }
                Some(prev) if threshold <= prev.threshold => {
                    return Err(ConfigError::field(
                        at("threshold"),
                        format!(
                            "must be greater than the previous tier's threshold ({}), got {threshold}",
                            prev.threshold
                        ),
                    ));
                }
                _ => {}
            }
            let multiplier_hundredths = hundredths(raw.multiplier)
                .filter(|m| (1..=MAX_MULTIPLIER_HUNDREDTHS).contains(m))
                .ok_or_else(|| {
                    ConfigError::field(
                        at("multiplier"),
                        format!(
                            "must be between 0.01 and {} with at most two decimals, got {}",
                            MAX_MULTIPLIER_HUNDREDTHS / 100,
                            raw.multiplier
                        ),
                    )
                })?;
            if parse_colour(raw.colour.trim()).is_none() {
                return Err(ConfigError::field(
                    at("colour"),
                    format!("must be #RRGGBB, got {:?}", raw.colour),
                ));
            }
            tiers.push(Tier {
                name,
                threshold,
                multiplier_hundredths,
                colour: raw.colour.trim().to_ascii_uppercase(),
                benefits: raw.benefits.trim().to_owned(),
            });
        }

        let mut rewards: Vec<Reward> = Vec::with_capacity(self.rewards.len());
        for (i, raw) in self.rewards.into_iter().enumerate() {
            let at = |f: &str| format!("rewards[{i}].{f}");
            let id = stable_id(&at("id"), &raw.id, rewards.iter().map(|r| r.id.as_str()))?;
            let name = non_empty(&at("name"), raw.name)?;
            let cost = in_range(&at("cost"), raw.cost, 1, MAX_REWARD_COST)?;
            let min_tier = match raw.min_tier {
                None => 0,
                Some(tier) => tiers
                    .iter()
                    .position(|t| t.name.eq_ignore_ascii_case(tier.trim()))
                    .ok_or_else(|| {
                        ConfigError::field(
                            at("min_tier"),
                            format!("{tier:?} is not one of the tiers"),
                        )
                    })?,
            };
            rewards.push(Reward {
                id,
                name,
                cost,
                min_tier,
            });
        }

        let welcome_bonus = in_range("bonuses.welcome", self.bonuses.welcome, 0, MAX_REWARD_COST)?;
        let birthday_bonus = in_range(
            "bonuses.birthday",
            self.bonuses.birthday,
            0,
            MAX_REWARD_COST,
        )?;
        let expiry_inactivity_days = match self.expiry.inactivity_days {
            None => None,
            Some(days) => Some(in_range("expiry.inactivity_days", days, 1, 36_600)?),
        };
        let offline_redeem_limit = in_range(
            "offline.redeem_limit_per_day",
            self.offline.redeem_limit_per_day,
            0,
            MAX_REWARD_COST,
        )?;

        let adjust_limit = in_range(
            "adjustments.limit",
            self.adjustments.limit,
            1,
            super::entry::MAX_ENTRY_POINTS,
        )?;

        let churn_days = in_range("insights.churn_days", self.insights.churn_days, 1, 3660)?;
        let cost = (self.insights.cost_per_1000_points * scale).round();
        if !cost.is_finite() || !(0.0..=MAX_SALE_LIMIT_MINOR as f64).contains(&cost) {
            return Err(ConfigError::field(
                "insights.cost_per_1000_points",
                format!(
                    "must be an amount from 0 to {}, got {}",
                    MAX_SALE_LIMIT_MINOR as f64 / scale,
                    self.insights.cost_per_1000_points
                ),
            ));
        }
        // Range-checked just above, so the conversion is exact.
        let cost_per_1000_points_minor = cost as i64;

        let timezone = self
            .timezone
            .map_or_else(|| "UTC".to_owned(), |t| t.trim().to_owned());
        let zone = jiff::tz::TimeZone::get(&timezone).map_err(|_| {
            ConfigError::field(
                "timezone",
                format!("{timezone:?} is not a time zone such as \"Europe/London\""),
            )
        })?;
        let categories = promotion::category_rates(self.earn.categories)?;
        let excluded_categories = promotion::excluded(self.earn.excluded_categories)?;
        let promotions = promotion::promotions(self.promotions, &tiers, scale)?;
        let stamp_cards = stamps::cards(self.stamp_cards)?;
        let causes = causes::causes(self.causes)?;
        let offers = offers::offers(self.offers)?;
        let badges = badges::badges(self.badges, &tiers)?;
        let reengagement = offers::reengagement(self.reengagement, &offers)?;
        let partners = partners::partners(self.partners)?;
        let paid_tier = match self.paid_tier {
            None => None,
            Some(raw) => {
                let tier = tiers
                    .iter()
                    .position(|t| t.name.eq_ignore_ascii_case(raw.tier.trim()))
                    .ok_or_else(|| {
                        ConfigError::field(
                            "paid_tier.tier",
                            format!("{:?} is not one of the tiers", raw.tier),
                        )
                    })?;
                let fee = (raw.fee * scale).round();
                if !fee.is_finite() || fee < 1.0 || fee > max_sale_minor as f64 {
                    return Err(ConfigError::field(
                        "paid_tier.fee",
                        format!(
                            "must be a positive amount within the largest sale, got {}",
                            raw.fee
                        ),
                    ));
                }
                Some(PaidTier {
                    tier,
                    // Range-checked just above, so the conversion is exact.
                    fee_minor: fee as i64,
                    days: in_range("paid_tier.days", raw.days, 1, 3_660)?,
                })
            }
        };
        let referral = referrals::referral(self.referral, scale, max_sale_minor)?;
        let return_window_days = Some(in_range(
            "earn.return_window_days",
            self.earn.return_window_days,
            0,
            365,
        )?)
        .filter(|d| *d > 0);

        Ok(Program {
            name,
            organisation,
            currency,
            minor_units: self.minor_units,
            country,
            country_code,
            points_per_unit,
            rounding: self.earn.rounding,
            max_sale_minor,
            tier_measure: self.tiers.measure,
            tier_window_days,
            tiers,
            rewards,
            welcome_bonus,
            birthday_bonus,
            expiry_inactivity_days,
            offline_redeem_limit,
            adjust_limit,
            churn_days,
            cost_per_1000_points_minor,
            timezone,
            zone,
            categories,
            excluded_categories,
            promotions,
            stamp_cards,
            causes,
            offers,
            badges,
            reengagement,
            paid_tier,
            partners,
            referral,
            return_window_days,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(from: &str, to: &str) -> Result<Program, ConfigError> {
        assert!(DEMO_PROGRAM_TOML.contains(from), "demo lacks {from:?}");
        Program::from_toml(&DEMO_PROGRAM_TOML.replacen(from, to, 1))
    }

    fn field_of(result: Result<Program, ConfigError>) -> String {
        match result {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.field_name().to_owned(),
        }
    }

    #[test]
    fn demo_program_is_valid() {
        let p = Program::demo();
        assert_eq!(p.tiers[0].threshold, 0);
        assert!(p.tiers.len() >= 3);
        assert!(!p.rewards.is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            field_of(with("currency = \"GBP\"", "currency = \"pounds\"")),
            "currency"
        );
        assert_eq!(
            field_of(with("yearly_cap = 10", "yearly_cap = 0")),
            "referral.yearly_cap"
        );
        assert_eq!(
            field_of(with("referrer_points = 200", "referrer_points = -5")),
            "referral.referrer_points"
        );
        assert_eq!(
            field_of(with("min_purchase = 5.00", "min_purchase = -1")),
            "referral.min_purchase"
        );
        assert_eq!(
            field_of(with("points_per_unit = 10", "points_per_unit = 0")),
            "earn.points_per_unit"
        );
        assert_eq!(
            field_of(with("points_per_unit = 10", "points_per_unit = \"ten\"")),
            "earn.points_per_unit"
        );
        assert_eq!(
            field_of(with("threshold = 1000", "threshold = 0")),
            "tiers.levels[1].threshold"
        );
        assert_eq!(
            field_of(with("multiplier = 1.25", "multiplier = 1.255")),
            "tiers.levels[1].multiplier"
        );
        assert_eq!(
            field_of(with("colour = \"#2E7D32\"", "colour = \"green\"")),
            "tiers.levels[0].colour"
        );
        assert_eq!(
            field_of(with("min_tier = \"Gold\"", "min_tier = \"Platinum\"")),
            "rewards[2].min_tier"
        );
        assert_eq!(
            field_of(with("window_days = 365", "window_days = -1")),
            "tiers.window_days"
        );
        assert_eq!(
            field_of(with("country = \"GB\"", "country = \"XX\"")),
            "country"
        );
        assert_eq!(field_of(with("[earn]", "surprise = 1\n[earn]")), "surprise");
        assert_eq!(
            field_of(with(
                "timezone = \"Europe/London\"",
                "timezone = \"Mars/Olympus\""
            )),
            "timezone"
        );
        assert_eq!(
            field_of(with("multiplier = 2.0\n", "multiplier = 0\n")),
            "earn.categories[0].multiplier"
        );
        assert_eq!(
            field_of(with("days = [\"sat\", \"sun\"]", "days = [\"caturday\"]")),
            "promotions[0].days"
        );
        assert_eq!(
            field_of(with("hours = \"07:00-09:00\"", "hours = \"09:00-07:00\"")),
            "promotions[2].hours"
        );
        assert_eq!(
            field_of(with("tiers = [\"Gold\"]", "tiers = [\"Platinum\"]")),
            "promotions[2].tiers"
        );
        assert_eq!(
            field_of(with("bonus = 100\n", "bonus = 100\nmultiplier = 2.0\n")),
            "promotions[1].multiplier"
        );
        assert_eq!(
            field_of(with("min_spend = 20.00", "min_spend = -1")),
            "promotions[1].min_spend"
        );
    }

    #[test]
    fn garbage_is_refused_cleanly() {
        assert!(Program::from_toml("this is = = not toml").is_err());
        assert!(Program::from_toml("").is_err());
    }

    #[test]
    fn tier_for_picks_highest_reached() {
        let p = Program::demo();
        assert_eq!(p.tier_for(0), 0);
        assert_eq!(p.tier_for(-5), 0);
        assert_eq!(p.tier_for(p.tiers[1].threshold), 1);
        assert_eq!(p.tier_for(p.tiers[1].threshold - 1), 0);
        assert_eq!(p.tier_for(i64::MAX), p.tiers.len() - 1);
    }
}
