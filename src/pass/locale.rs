//! The words on a pass in each language it ships, and Apple's `.strings` file format.

use std::collections::BTreeMap;

use super::PassMember;
use crate::domain::program::TierMeasure;
use crate::domain::summary::next_tier;

/// A language a pass is localised into: its `.lproj` folder name and its words.
pub(crate) struct Locale {
    pub lproj: &'static str,
    words: Words,
}

struct Words {
    description: &'static str,
    points: &'static str,
    points_change: &'static str,
    member: &'static str,
    tier: &'static str,
    card: &'static str,
    next_tier: &'static str,
    next_tier_value: &'static str,
    top_tier: &'static str,
    how_to_earn: &'static str,
    earn_points: &'static str,
    earn_spend: &'static str,
    benefits: &'static str,
    rewards: &'static str,
    reward_line: &'static str,
    reward_min_tier: &'static str,
    terms: &'static str,
    terms_text: &'static str,
    expiry_text: &'static str,
    demo: &'static str,
    demo_text: &'static str,
    offer: &'static str,
    offer_value: &'static str,
    badges: &'static str,
}

/// English first (the default), then French.
pub(crate) const LOCALES: [Locale; 2] = [
    Locale {
        lproj: "en",
        words: Words {
            description: "{program} loyalty card",
            points: "POINTS",
            points_change: "Your balance is now %@ points",
            member: "MEMBER",
            tier: "TIER",
            card: "CARD",
            next_tier: "NEXT TIER",
            next_tier_value: "{tier} in {n} pts",
            top_tier: "Top tier",
            how_to_earn: "How to earn",
            earn_points: "Earn {n} points for every {unit} you spend, more in higher tiers. Show this card at the till before you pay. Tiers follow the points you earn over {days} days.",
            earn_spend: "Earn {n} points for every {unit} you spend, more in higher tiers. Show this card at the till before you pay. Tiers follow what you spend over {days} days.",
            benefits: "Your {tier} benefits",
            rewards: "Rewards",
            reward_line: "{reward}: {cost} points",
            reward_min_tier: "{reward}: {cost} points ({tier} and above)",
            terms: "Terms",
            terms_text: "Points have no cash value and cannot be exchanged or transferred. {organisation} may change the programme with notice.",
            expiry_text: "Points expire after {days} days without a purchase or reward.",
            demo: "DEMO PASS",
            demo_text: "Signed with a self-signed demo certificate: it will not install on a phone.",
            offer: "OFFER",
            offer_value: "{offer} until {date}",
            badges: "Badges",
        },
    },
    Locale {
        lproj: "fr",
        words: Words {
            description: "Carte de fidélité {program}",
            points: "POINTS",
            points_change: "Votre solde est maintenant de %@ points",
            member: "MEMBRE",
            tier: "NIVEAU",
            card: "CARTE",
            next_tier: "NIVEAU SUIVANT",
            next_tier_value: "{tier} dans {n} pts",
            top_tier: "Niveau maximal",
            how_to_earn: "Comment gagner des points",
            earn_points: "Gagnez {n} points pour chaque {unit} dépensé, davantage aux niveaux supérieurs. Présentez cette carte en caisse avant de payer. Le niveau suit les points gagnés sur {days} jours.",
            earn_spend: "Gagnez {n} points pour chaque {unit} dépensé, davantage aux niveaux supérieurs. Présentez cette carte en caisse avant de payer. Le niveau suit vos achats sur {days} jours.",
            benefits: "Vos avantages {tier}",
            rewards: "Récompenses",
            reward_line: "{reward} : {cost} points",
            reward_min_tier: "{reward} : {cost} points (niveau {tier} et plus)",
            terms: "Conditions",
            terms_text: "Les points n'ont aucune valeur monétaire et ne peuvent être ni échangés ni transférés. {organisation} peut modifier le programme avec préavis.",
            expiry_text: "Les points expirent après {days} jours sans achat ni récompense.",
            demo: "PASS DE DÉMONSTRATION",
            demo_text: "Signé avec un certificat de démonstration auto-signé : il ne s'installera pas sur un téléphone.",
            offer: "OFFRE",
            offer_value: "{offer} jusqu'au {date}",
            badges: "Badges",
        },
    },
];

/// Keys used in pass.json for localised text; each locale's pass.strings gives their words.
pub(crate) mod key {
    pub const DESCRIPTION: &str = "description";
    pub const POINTS: &str = "points";
    pub const POINTS_CHANGE: &str = "points_change";
    pub const MEMBER: &str = "member";
    pub const TIER: &str = "tier";
    pub const CARD: &str = "card";
    pub const NEXT_TIER: &str = "next_tier";
    pub const NEXT_TIER_VALUE: &str = "next_tier_value";
    /// Labels of the program's first stamp cards (their names, in every language).
    pub const STAMP_CARDS: [&str; 3] = ["stamp_card_1", "stamp_card_2", "stamp_card_3"];
    pub const HOW_TO_EARN: &str = "how_to_earn";
    pub const HOW_TO_EARN_VALUE: &str = "how_to_earn_value";
    pub const BENEFITS: &str = "benefits";
    pub const REWARDS: &str = "rewards";
    pub const REWARDS_VALUE: &str = "rewards_value";
    pub const TERMS: &str = "terms";
    pub const TERMS_VALUE: &str = "terms_value";
    pub const DEMO: &str = "demo";
    pub const DEMO_VALUE: &str = "demo_value";
    pub const OFFER: &str = "offer";
    pub const OFFER_VALUE: &str = "offer_value";
    pub const BADGES: &str = "badges";
    pub const BADGES_VALUE: &str = "badges_value";
}

fn fill(template: &str, pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .fold(template.to_owned(), |text, (name, value)| {
            text.replace(&format!("{{{name}}}"), value)
        })
}

impl Locale {
    /// Every localised string of one member's pass in this language.
    pub fn strings(&self, pass: &PassMember<'_>, demo: bool) -> BTreeMap<&'static str, String> {
        let w = &self.words;
        let program = pass.program;
        let tier = program.tier(pass.summary.tier);
        let unit = program.format_money(10_i64.pow(u32::from(program.minor_units)));
        let days = program.tier_window_days.to_string();
        let earn = match program.tier_measure {
            TierMeasure::Points => w.earn_points,
            TierMeasure::Spend => w.earn_spend,
        };
        let next = match next_tier(program, pass.summary) {
            Some((index, needed)) => fill(
                w.next_tier_value,
                &[
                    ("tier", &program.tier(index).name),
                    ("n", &needed.to_string()),
                ],
            ),
            None => w.top_tier.to_owned(),
        };
        let rewards = program
            .rewards
            .iter()
            .map(|r| {
                let cost = r.cost.to_string();
                let min_tier = &program.tier(r.min_tier).name;
                let template = if r.min_tier == 0 {
                    w.reward_line
                } else {
                    w.reward_min_tier
                };
                fill(
                    template,
                    &[("reward", &r.name), ("cost", &cost), ("tier", min_tier)],
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        let mut terms = fill(w.terms_text, &[("organisation", &program.organisation)]);
        if let Some(expiry) = program.expiry_inactivity_days {
            terms = format!(
                "{} {terms}",
                fill(w.expiry_text, &[("days", &expiry.to_string())])
            );
        }
        let mut out = BTreeMap::from([
            (
                key::DESCRIPTION,
                fill(w.description, &[("program", &program.name)]),
            ),
            (key::POINTS, w.points.to_owned()),
            (key::POINTS_CHANGE, w.points_change.to_owned()),
            (key::MEMBER, w.member.to_owned()),
            (key::TIER, w.tier.to_owned()),
            (key::CARD, w.card.to_owned()),
            (key::NEXT_TIER, w.next_tier.to_owned()),
            (key::NEXT_TIER_VALUE, next),
            (key::HOW_TO_EARN, w.how_to_earn.to_owned()),
            (
                key::HOW_TO_EARN_VALUE,
                fill(
                    earn,
                    &[
                        ("n", &program.points_per_unit.to_string()),
                        ("unit", &unit),
                        ("days", &days),
                    ],
                ),
            ),
            (key::BENEFITS, fill(w.benefits, &[("tier", &tier.name)])),
            (key::REWARDS, w.rewards.to_owned()),
            (key::REWARDS_VALUE, rewards),
            (key::TERMS, w.terms.to_owned()),
            (key::TERMS_VALUE, terms),
        ]);
        for (label, card) in key::STAMP_CARDS.iter().zip(&program.stamp_cards) {
            out.insert(label, card.name.clone());
        }
        if let Some((offer, until)) = pass.offers.first() {
            out.insert(key::OFFER, w.offer.to_owned());
            let date = until.date().to_string();
            out.insert(
                key::OFFER_VALUE,
                fill(w.offer_value, &[("offer", offer), ("date", &date)]),
            );
        }
        if !pass.badges.is_empty() {
            out.insert(key::BADGES, w.badges.to_owned());
            out.insert(key::BADGES_VALUE, pass.badges.join(", "));
        }
        if demo {
            out.insert(key::DEMO, w.demo.to_owned());
            out.insert(key::DEMO_VALUE, w.demo_text.to_owned());
        }
        out
    }
}

/// Apple `.strings` text: `"key" = "value";` per line, UTF-8, `\n` line ends, with `"`, `\` and
/// newlines escaped.
pub(crate) fn strings_file(strings: &BTreeMap<&'static str, String>) -> String {
    fn escape(s: &str) -> String {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .replace('\r', "")
    }
    strings
        .iter()
        .map(|(k, v)| format!("\"{}\" = \"{}\";\n", escape(k), escape(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_file_escapes_quotes_backslashes_and_newlines() {
        let strings = BTreeMap::from([("a", "say \"hi\"\\\nbye".to_owned())]);
        assert_eq!(
            strings_file(&strings),
            "\"a\" = \"say \\\"hi\\\"\\\\\\nbye\";\n"
        );
    }

    #[test]
    fn every_locale_fills_every_placeholder() {
        let program = crate::domain::Program::demo();
        let member = super::super::fixture::member();
        let summary = super::super::fixture::summary(120);
        let pass = PassMember {
            program: &program,
            member: &member,
            summary: &summary,
            code: "TP1.x",
            auth_token: "token",
            voided: false,
            now: crate::domain::Timestamp::from_millis(0),
            stamps: &Default::default(),
            offers: &[],
            badges: &[],
        };
        for locale in &LOCALES {
            let strings = locale.strings(&pass, true);
            // 17 words of ours and the demo program's one stamp card.
            assert_eq!(strings.len(), 18);
            for (k, v) in strings {
                assert!(!v.contains('{'), "{} {k}: {v}", locale.lproj);
            }
        }
    }
}
