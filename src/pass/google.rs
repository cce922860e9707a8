//! Google Wallet: a LoyaltyClass per tier (tier name and colour live on the class), a
//! LoyaltyObject per member, and the RS256 "savetowallet" JWT and save URL that carry them.

use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::{PassError, PassMember};
use crate::domain::{Program, Timestamp};

/// Where a signed JWT becomes a "Save to Google Wallet" link.
pub const SAVE_URL_PREFIX: &str = "https://pay.google.com/gp/v/save/";

/// Google-side settings that do not change per member.
#[derive(Debug, Clone)]
pub struct GoogleSettings {
    /// The numeric issuer id from the Google Pay & Wallet Console.
    pub issuer_id: String,
    /// Class ids are `issuer.<class_prefix>-<tier>`.
    pub class_prefix: String,
    /// Public HTTPS address of the program logo (Google fetches it).
    pub logo_uri: String,
    /// Web origins allowed to show the save button; empty for plain links.
    pub origins: Vec<String>,
    /// Issuer ids allowed to redeem over NFC (Smart Tap); empty disables Smart Tap.
    pub smart_tap_issuers: Vec<String>,
    /// Signed by a demo key: labelled on the pass; Google will refuse it.
    pub demo: bool,
}

/// The fields of Google's service-account key file that signing needs.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceAccountKey {
    #[serde(rename = "type")]
    pub kind: String,
    pub private_key_id: String,
    pub private_key: String,
    pub client_email: String,
    /// Where OAuth 2.0 access tokens are requested; Google's token endpoint when the file
    /// does not say.
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
}

/// Google's OAuth 2.0 token endpoint, as key files name it in `token_uri`.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

fn default_token_uri() -> String {
    DEFAULT_TOKEN_URI.to_owned()
}

impl ServiceAccountKey {
    /// Reads and checks a key file as Google issues it.
    pub fn read(path: &Path) -> Result<Self, PassError> {
        let bad = |reason: String| PassError::Key {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| PassError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let key: ServiceAccountKey = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not a Google service-account key file: {e}")))?;
        if key.kind != "service_account" {
            return Err(bad(format!(
                "\"type\" is \"{}\", expected \"service_account\"",
                key.kind
            )));
        }
        if !key.client_email.contains('@') {
            return Err(bad("\"client_email\" is not an email address".into()));
        }
        Ok(key)
    }
}

/// A Google `LocalizedString` with only its default value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalizedString {
    pub default_value: TranslatedString,
}

/// One language's text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranslatedString {
    pub language: String,
    pub value: String,
}

impl LocalizedString {
    fn english(value: &str) -> Self {
        LocalizedString {
            default_value: TranslatedString {
                language: "en-GB".into(),
                value: value.to_owned(),
            },
        }
    }
}

/// An image by address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    pub source_uri: ImageUri,
    pub content_description: LocalizedString,
}

/// An image's address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUri {
    pub uri: String,
}

/// The template shared by every member of one tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoyaltyClass {
    pub id: String,
    pub issuer_name: String,
    pub review_status: String,
    pub program_name: String,
    pub program_logo: Image,
    pub hex_background_color: String,
    pub rewards_tier_label: String,
    pub rewards_tier: String,
    pub account_name_label: String,
    pub account_id_label: String,
    pub country_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_smart_tap: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub redemption_issuers: Vec<String>,
}

/// One member's card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoyaltyObject {
    pub id: String,
    pub class_id: String,
    pub state: String,
    pub account_id: String,
    pub account_name: String,
    pub loyalty_points: LoyaltyPoints,
    /// The first stamp card, when the program has one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub secondary_loyalty_points: Option<LoyaltyPoints>,
    pub barcode: Barcode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smart_tap_redemption_value: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub text_modules_data: Vec<TextModule>,
}

/// A points balance with its label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoyaltyPoints {
    pub label: String,
    pub balance: LoyaltyPointsBalance,
}

/// Exactly one form of a balance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LoyaltyPointsBalance {
    #[serde(rename = "int")]
    Int(i32),
    #[serde(rename = "string")]
    Text(String),
}

/// The barcode on the card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Barcode {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    pub alternate_text: String,
}

/// A titled block of text on the card's details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextModule {
    pub id: String,
    pub header: String,
    pub body: String,
}

/// The JWT claims of a save link: by default the "fat" link that carries the class and object
/// whole; with [`ReferencePayload`], the short link to an object already inserted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaveClaims<P = SavePayload> {
    pub iss: String,
    pub aud: String,
    pub typ: String,
    pub iat: i64,
    pub origins: Vec<String>,
    pub payload: P,
}

/// What a save link creates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavePayload {
    pub loyalty_classes: Vec<LoyaltyClass>,
    pub loyalty_objects: Vec<LoyaltyObject>,
}

/// An object already inserted through the REST API, as a short save link names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    pub id: String,
    pub class_id: String,
}

impl From<&LoyaltyObject> for ObjectReference {
    fn from(object: &LoyaltyObject) -> Self {
        ObjectReference {
            id: object.id.clone(),
            class_id: object.class_id.clone(),
        }
    }
}

/// What a short save link saves: objects that already exist, by reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferencePayload {
    pub loyalty_objects: Vec<ObjectReference>,
}

/// Lower-case letters, digits and `-`, from any text (for id suffixes).
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

fn valid_suffix(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl GoogleSettings {
    /// Checks the issuer id and ids' suffix rules; `source` names the config for messages.
    pub fn validate(&self) -> Result<(), PassError> {
        let bad = |field: &str, reason: &str| PassError::Google {
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        if self.issuer_id.is_empty()
            || self.issuer_id.len() > 19
            || !self.issuer_id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad(
                "issuer_id",
                &format!(
                    "\"{}\" is not an issuer id: use the number shown in the Google Pay & Wallet Console",
                    self.issuer_id
                ),
            ));
        }
        if !valid_suffix(&self.class_prefix) {
            return Err(bad(
                "class_prefix",
                "may hold only letters, digits, '.', '_' and '-'",
            ));
        }
        if !self.logo_uri.starts_with("https://") {
            return Err(bad(
                "logo_uri",
                "must be an https:// address Google can fetch",
            ));
        }
        for issuer in &self.smart_tap_issuers {
            if issuer.is_empty() || !issuer.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(
                    "smart_tap_issuers",
                    &format!("\"{issuer}\" is not an issuer id"),
                ));
            }
        }
        Ok(())
    }

    /// The class id of one tier: `issuer.<class_prefix>-<tier name>`.
    pub fn class_id(&self, program: &Program, tier: usize) -> String {
        let tier = slug(&program.tier(tier).name);
        format!("{}.{}-{tier}", self.issuer_id, self.class_prefix)
    }

    /// The object id of the pass with serial number `serial`: `issuer.card-<card number>`, one
    /// object per card, so a replaced card's object is voided and the new card gets its own.
    pub fn object_id(&self, serial: &str) -> String {
        format!("{}.card-{serial}", self.issuer_id)
    }

    /// The class for one tier.
    pub fn loyalty_class(&self, program: &Program, tier: usize) -> LoyaltyClass {
        let t = program.tier(tier);
        let [r, g, b] = t.rgb();
        let smart_tap = !self.smart_tap_issuers.is_empty();
        LoyaltyClass {
            id: self.class_id(program, tier),
            issuer_name: program.organisation.clone(),
            review_status: "UNDER_REVIEW".into(),
            program_name: if self.demo {
                format!("{} (DEMO)", program.name)
            } else {
                program.name.clone()
            },
            program_logo: Image {
                source_uri: ImageUri {
                    uri: self.logo_uri.clone(),
                },
                content_description: LocalizedString::english(&program.organisation),
            },
            hex_background_color: format!("#{r:02x}{g:02x}{b:02x}"),
            rewards_tier_label: "Tier".into(),
            rewards_tier: t.name.clone(),
            account_name_label: "Member".into(),
            account_id_label: "Card".into(),
            country_code: program.country_code.clone(),
            enable_smart_tap: smart_tap.then_some(true),
            redemption_issuers: self.smart_tap_issuers.clone(),
        }
    }

    /// One member's object.
    pub fn loyalty_object(&self, pass: &PassMember<'_>) -> LoyaltyObject {
        let program = pass.program;
        let balance = i32::try_from(pass.summary.balance)
            .map(LoyaltyPointsBalance::Int)
            .unwrap_or_else(|_| LoyaltyPointsBalance::Text(pass.summary.balance.to_string()));
        let tier = program.tier(pass.summary.tier);
        let mut text_modules = vec![TextModule {
            id: "benefits".into(),
            header: format!("{} benefits", tier.name),
            body: tier.benefits.clone(),
        }];
        if let Some((offer, until)) = pass.offers.first() {
            text_modules.push(TextModule {
                id: "offer".into(),
                header: "Offer".into(),
                body: format!("{offer} until {}", until.date()),
            });
        }
        if !pass.badges.is_empty() {
            text_modules.push(TextModule {
                id: "badges".into(),
                header: "Badges".into(),
                body: pass.badges.join(", "),
            });
        }
        if self.demo {
            text_modules.insert(
                0,
                TextModule {
                    id: "demo".into(),
                    header: "DEMO PASS".into(),
                    body: "Signed with a demo key: Google Wallet will not accept it.".into(),
                },
            );
        }
        LoyaltyObject {
            id: self.object_id(pass.serial()),
            class_id: self.class_id(program, pass.summary.tier),
            state: if pass.voided { "INACTIVE" } else { "ACTIVE" }.into(),
            account_id: pass.member.card.grouped(),
            account_name: pass.member.name.clone(),
            loyalty_points: LoyaltyPoints {
                label: "Points".into(),
                balance,
            },
            secondary_loyalty_points: pass.stamp_rows().into_iter().next().map(|(name, row)| {
                LoyaltyPoints {
                    label: name,
                    balance: LoyaltyPointsBalance::Text(row),
                }
            }),
            barcode: Barcode {
                kind: "QR_CODE".into(),
                value: pass.code.to_owned(),
                alternate_text: pass.member.card.grouped(),
            },
            smart_tap_redemption_value: (!self.smart_tap_issuers.is_empty())
                .then(|| pass.code.to_owned()),
            text_modules_data: text_modules,
        }
    }
}

/// Signs save links with a service-account key.
pub struct SaveLinkMaker {
    pub settings: GoogleSettings,
    issuer_email: String,
    key_id: String,
    key: EncodingKey,
}

impl std::fmt::Debug for SaveLinkMaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SaveLinkMaker(..)")
    }
}

impl SaveLinkMaker {
    /// Checks the settings and the key (by signing a probe), so errors surface at start-up.
    pub fn new(
        settings: GoogleSettings,
        key: &ServiceAccountKey,
        key_path: &Path,
    ) -> Result<Self, PassError> {
        settings.validate()?;
        let bad = |reason: String| PassError::Key {
            path: key_path.display().to_string(),
            reason,
        };
        let encoding = EncodingKey::from_rsa_pem(key.private_key.as_bytes())
            .map_err(|e| bad(format!("\"private_key\" is not an RSA PEM key: {e}")))?;
        let maker = SaveLinkMaker {
            settings,
            issuer_email: key.client_email.clone(),
            key_id: key.private_key_id.clone(),
            key: encoding,
        };
        jsonwebtoken::encode(&maker.header(), &serde_json::json!({}), &maker.key)
            .map_err(|e| bad(format!("\"private_key\" cannot sign: {e}")))?;
        Ok(maker)
    }

    fn header(&self) -> Header {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.key_id.clone());
        header
    }

    /// The claims of one member's save link.
    pub fn claims(&self, pass: &PassMember<'_>) -> SaveClaims {
        SaveClaims {
            iss: self.issuer_email.clone(),
            aud: "google".into(),
            typ: "savetowallet".into(),
            iat: pass.now.millis() / 1000,
            origins: self.settings.origins.clone(),
            payload: SavePayload {
                loyalty_classes: vec![self.settings.loyalty_class(pass.program, pass.summary.tier)],
                loyalty_objects: vec![self.settings.loyalty_object(pass)],
            },
        }
    }

    /// The signed JWT.
    pub fn jwt(&self, pass: &PassMember<'_>) -> Result<String, PassError> {
        jsonwebtoken::encode(&self.header(), &self.claims(pass), &self.key)
            .map_err(|e| PassError::Sign(e.to_string()))
    }

    /// The "Save to Google Wallet" link.
    pub fn save_url(&self, pass: &PassMember<'_>) -> Result<String, PassError> {
        Ok(format!("{SAVE_URL_PREFIX}{}", self.jwt(pass)?))
    }

    /// The reference to one member's object (its id and its tier's class id).
    pub fn object_reference(&self, pass: &PassMember<'_>) -> ObjectReference {
        ObjectReference {
            id: self.settings.object_id(pass.serial()),
            class_id: self.settings.class_id(pass.program, pass.summary.tier),
        }
    }

    /// The claims of a short save link to `object`, which must already have been inserted.
    pub fn reference_claims(
        &self,
        object: &ObjectReference,
        now: Timestamp,
    ) -> SaveClaims<ReferencePayload> {
        SaveClaims {
            iss: self.issuer_email.clone(),
            aud: "google".into(),
            typ: "savetowallet".into(),
            iat: now.millis() / 1000,
            origins: self.settings.origins.clone(),
            payload: ReferencePayload {
                loyalty_objects: vec![object.clone()],
            },
        }
    }

    /// The short "Save to Google Wallet" link to an object already inserted through the REST
    /// API: the JWT names the object and its class and nothing more, so the link stays short
    /// and later patches of the object reach the saved card.
    pub fn reference_save_url(
        &self,
        object: &ObjectReference,
        now: Timestamp,
    ) -> Result<String, PassError> {
        let jwt = jsonwebtoken::encode(
            &self.header(),
            &self.reference_claims(object, now),
            &self.key,
        )
        .map_err(|e| PassError::Sign(e.to_string()))?;
        Ok(format!("{SAVE_URL_PREFIX}{jwt}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> GoogleSettings {
        GoogleSettings {
            issuer_id: "3388000000012345678".into(),
            class_prefix: "bean-leaf-rewards".into(),
            logo_uri: "https://example.com/logo.png".into(),
            origins: vec![],
            smart_tap_issuers: vec![],
            demo: false,
        }
    }

    #[test]
    fn slugs_keep_only_safe_characters() {
        assert_eq!(slug("Bean & Leaf Rewards!"), "bean-leaf-rewards");
        assert_eq!(slug("Gold"), "gold");
    }

    #[test]
    fn issuer_ids_must_be_numeric() {
        let mut s = settings();
        assert!(s.validate().is_ok());
        s.issuer_id = "my-issuer".into();
        let err = s.validate().expect_err("refused").to_string();
        assert!(err.contains("issuer_id"), "{err}");
    }

    #[test]
    fn classes_carry_the_tier_colour_and_name() {
        let program = Program::demo();
        let class = settings().loyalty_class(&program, 2);
        assert_eq!(class.id, "3388000000012345678.bean-leaf-rewards-gold");
        assert_eq!(class.hex_background_color, "#c9a227");
        assert_eq!(class.rewards_tier, "Gold");
        assert_eq!(class.enable_smart_tap, None);
    }

    #[test]
    fn key_files_without_a_token_uri_use_googles() {
        let json = r#"{"type": "service_account", "private_key_id": "k1",
            "private_key": "-", "client_email": "a@b.iam.gserviceaccount.com"}"#;
        let key: ServiceAccountKey = serde_json::from_str(json).expect("key file");
        assert_eq!(key.token_uri, DEFAULT_TOKEN_URI);
        let json = json.replace(
            "\"k1\",",
            "\"k1\", \"token_uri\": \"http://127.0.0.1:9/t\",",
        );
        let key: ServiceAccountKey = serde_json::from_str(&json).expect("key file");
        assert_eq!(key.token_uri, "http://127.0.0.1:9/t");
    }

    /// The short link's JWT verifies with the service account's public key and references the
    /// member's object and tier class, carrying no class or object body.
    #[test]
    fn short_save_links_reference_the_object_only() {
        let (private, public) = crate::pass::demo::rsa_key().expect("RSA key");
        let email = "wallet@example.iam.gserviceaccount.com";
        let key: ServiceAccountKey =
            serde_json::from_str(&crate::pass::demo::service_account_json(email, &private))
                .expect("key file");
        let maker =
            SaveLinkMaker::new(settings(), &key, Path::new("key.json")).expect("save link maker");
        let program = Program::demo();
        let member = crate::pass::fixture::member();
        let summary = crate::pass::fixture::summary(420);
        let now = Timestamp::from_millis(1_795_435_200_000);
        let pass = PassMember {
            program: &program,
            member: &member,
            summary: &summary,
            code: "TP1.0123456789.ABCDEFGHIJKLMNOP",
            auth_token: "0123456789abcdef0123",
            voided: false,
            now,
            stamps: &Default::default(),
            offers: &[],
            badges: &[],
        };
        let reference = maker.object_reference(&pass);
        let object = maker.settings.loyalty_object(&pass);
        assert_eq!(reference, ObjectReference::from(&object));
        assert_eq!(
            reference.id,
            format!("3388000000012345678.card-{}", member.card.as_str())
        );
        assert_eq!(
            reference.class_id,
            "3388000000012345678.bean-leaf-rewards-green"
        );

        let url = maker.reference_save_url(&reference, now).expect("save url");
        let jwt = url.strip_prefix(SAVE_URL_PREFIX).expect("save URL prefix");
        let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
        validation.set_audience(&["google"]);
        validation.set_issuer(&[email]);
        validation.set_required_spec_claims(&["iss", "aud"]);
        validation.validate_exp = false;
        let decoding = jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()).expect("public");
        let token = jsonwebtoken::decode::<serde_json::Value>(jwt, &decoding, &validation)
            .expect("verifies with the service account's public key");
        assert_eq!(
            token.header.kid.as_deref(),
            Some(key.private_key_id.as_str())
        );
        let claims = token.claims;
        assert_eq!(claims["typ"], "savetowallet");
        assert_eq!(claims["iat"], 1_795_435_200);
        assert_eq!(claims["origins"], serde_json::json!([]));
        assert_eq!(
            claims["payload"],
            serde_json::json!({"loyaltyObjects": [{
                "id": reference.id,
                "classId": reference.class_id,
            }]})
        );
        assert!(url.len() < maker.save_url(&pass).expect("fat link").len() / 2);

        let (_, other_public) = crate::pass::demo::rsa_key().expect("other key");
        let other = jsonwebtoken::DecodingKey::from_rsa_pem(other_public.as_bytes()).expect("pem");
        assert!(jsonwebtoken::decode::<serde_json::Value>(jwt, &other, &validation).is_err());
    }
}
