//! Apple Wallet storeCard passes: `pass.json`, localisations, images, `manifest.json` (SHA-1 of
//! every file) and the detached CMS `signature`, zipped (stored, not deflated) into a .pkpass.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use super::locale::{LOCALES, key, strings_file};
use super::{PassError, PassMember, PassSigner, images, write_atomically};

/// The MIME type to serve a .pkpass with.
pub const MIME_TYPE: &str = "application/vnd.apple.pkpass";

/// The largest NFC message Wallet carries.
pub const NFC_MESSAGE_MAX: usize = 64;

/// Apple-side settings that do not change per member.
#[derive(Debug, Clone)]
pub struct AppleSettings {
    pub pass_type_identifier: String,
    pub team_identifier: String,
    /// Base URL of the PassKit web service, when a server is configured.
    pub web_service_url: Option<String>,
    /// Base64 X.509 SubjectPublicKeyInfo (ECDH P-256) for Wallet's NFC (VAS) protocol.
    pub nfc_encryption_public_key: Option<String>,
    /// A folder with icon/logo/strip PNGs replacing the built-in ones.
    pub images: Option<PathBuf>,
    /// Signed by a self-signed demo chain: labelled on the pass as not installable.
    pub demo: bool,
}

/// `pass.json`, as Apple documents it (only the keys a storeCard here uses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PassJson {
    pub format_version: u8,
    pub pass_type_identifier: String,
    pub serial_number: String,
    pub team_identifier: String,
    pub organization_name: String,
    pub description: String,
    pub logo_text: String,
    pub foreground_color: String,
    pub background_color: String,
    pub label_color: String,
    #[serde(rename = "webServiceURL", skip_serializing_if = "Option::is_none")]
    pub web_service_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication_token: Option<String>,
    pub barcodes: Vec<Barcode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nfc: Option<Nfc>,
    /// A pass that no longer stands (card replaced, member erased): Wallet greys it out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub voided: bool,
    pub store_card: StoreCard,
}

/// One barcode; the first format a device supports is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Barcode {
    pub format: String,
    pub message: String,
    pub message_encoding: String,
    pub alt_text: String,
}

/// The NFC dictionary (needs an NFC-entitled certificate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Nfc {
    pub message: String,
    pub encryption_public_key: String,
}

/// The storeCard field groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoreCard {
    pub header_fields: Vec<Field>,
    pub primary_fields: Vec<Field>,
    pub secondary_fields: Vec<Field>,
    pub auxiliary_fields: Vec<Field>,
    pub back_fields: Vec<Field>,
}

/// A field; `label`, text `value`s and `changeMessage` may be keys into pass.strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Field {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub value: FieldValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_message: Option<String>,
}

/// A field value: text or a number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    Number(i64),
    Text(String),
}

fn field(key: &str, label: Option<&str>, value: FieldValue) -> Field {
    Field {
        key: key.to_owned(),
        label: label.map(str::to_owned),
        value,
        change_message: None,
    }
}

fn text(s: &str) -> FieldValue {
    FieldValue::Text(s.to_owned())
}

/// CSS `rgb(r, g, b)`, the form Apple documents.
fn css_rgb([r, g, b]: [u8; 3]) -> String {
    format!("rgb({r}, {g}, {b})")
}

/// Foreground and label colours that read well on `background`.
fn text_colours(background: [u8; 3]) -> ([u8; 3], [u8; 3]) {
    let [r, g, b] = background.map(f32::from);
    let luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    let fg = if luminance > 150.0 {
        [20, 20, 20]
    } else {
        [255, 255, 255]
    };
    // Labels: three quarters of the way from the background to the text colour.
    let mix = |i: usize| {
        let v = (f32::from(background[i]) + 0.75 * (f32::from(fg[i]) - f32::from(background[i])))
            .round();
        v.clamp(0.0, 255.0) as u8
    };
    (fg, [mix(0), mix(1), mix(2)])
}

/// pass.json for one member.
pub fn pass_json(settings: &AppleSettings, pass: &PassMember<'_>) -> Result<PassJson, PassError> {
    let program = pass.program;
    let tier = program.tier(pass.summary.tier);
    let background = tier.rgb();
    let (foreground, label) = text_colours(background);
    let nfc = match &settings.nfc_encryption_public_key {
        None => None,
        Some(key) => {
            if pass.code.len() > NFC_MESSAGE_MAX {
                return Err(PassError::Sign(format!(
                    "the member code is {} bytes; NFC messages hold at most {NFC_MESSAGE_MAX}",
                    pass.code.len()
                )));
            }
            Some(Nfc {
                message: pass.code.to_owned(),
                encryption_public_key: key.clone(),
            })
        }
    };
    let mut points = field(
        "points",
        Some(key::POINTS),
        FieldValue::Number(pass.summary.balance),
    );
    points.change_message = Some(key::POINTS_CHANGE.to_owned());
    let mut back_fields = Vec::new();
    if settings.demo {
        back_fields.push(field("demo", Some(key::DEMO), text(key::DEMO_VALUE)));
    }
    if !pass.badges.is_empty() {
        back_fields.push(field("badges", Some(key::BADGES), text(key::BADGES_VALUE)));
    }
    back_fields.extend([
        field(
            "how_to_earn",
            Some(key::HOW_TO_EARN),
            text(key::HOW_TO_EARN_VALUE),
        ),
        field("benefits", Some(key::BENEFITS), text(&tier.benefits)),
        field("rewards", Some(key::REWARDS), text(key::REWARDS_VALUE)),
        field("terms", Some(key::TERMS), text(key::TERMS_VALUE)),
    ]);
    Ok(PassJson {
        format_version: 1,
        pass_type_identifier: settings.pass_type_identifier.clone(),
        serial_number: pass.serial().to_owned(),
        team_identifier: settings.team_identifier.clone(),
        organization_name: program.organisation.clone(),
        description: key::DESCRIPTION.to_owned(),
        logo_text: program.name.clone(),
        foreground_color: css_rgb(foreground),
        background_color: css_rgb(background),
        label_color: css_rgb(label),
        web_service_url: settings.web_service_url.clone(),
        authentication_token: settings
            .web_service_url
            .as_ref()
            .map(|_| pass.auth_token.to_owned()),
        barcodes: vec![Barcode {
            format: "PKBarcodeFormatQR".into(),
            message: pass.code.to_owned(),
            message_encoding: "iso-8859-1".into(),
            alt_text: pass.member.card.grouped(),
        }],
        nfc,
        voided: pass.voided,
        store_card: StoreCard {
            header_fields: vec![points],
            primary_fields: vec![field("member", Some(key::MEMBER), text(&pass.member.name))],
            secondary_fields: vec![
                field("tier", Some(key::TIER), text(&tier.name)),
                field("card", Some(key::CARD), text(&pass.member.card.grouped())),
            ],
            auxiliary_fields: std::iter::once(field(
                "next_tier",
                Some(key::NEXT_TIER),
                text(key::NEXT_TIER_VALUE),
            ))
            .chain(
                key::STAMP_CARDS
                    .iter()
                    .zip(pass.stamp_rows())
                    .map(|(label, (_, row))| field(label, Some(label), text(&row))),
            )
            .chain(
                pass.offers
                    .first()
                    .map(|_| field("offer", Some(key::OFFER), text(key::OFFER_VALUE))),
            )
            .collect(),
            back_fields,
        },
    })
}

/// Makes signed .pkpass files.
#[derive(Debug)]
pub struct PassMaker {
    pub settings: AppleSettings,
    signer: PassSigner,
    images: Vec<(&'static str, Vec<u8>)>,
}

impl PassMaker {
    /// Checks the images up front, so a missing one is reported before any member is tried.
    pub fn new(settings: AppleSettings, signer: PassSigner) -> Result<Self, PassError> {
        let images = images::load(settings.images.as_deref())?;
        Ok(PassMaker {
            settings,
            signer,
            images,
        })
    }

    /// The Pass Type ID identity passes are signed with (APNs takes it as its TLS client).
    pub fn signer(&self) -> &PassSigner {
        &self.signer
    }

    /// Every file of the pass except `manifest.json` and `signature`, in archive order.
    pub fn files(&self, pass: &PassMember<'_>) -> Result<Vec<(String, Vec<u8>)>, PassError> {
        let json = pass_json(&self.settings, pass)?;
        let json = serde_json::to_vec(&json).map_err(|e| PassError::Sign(e.to_string()))?;
        let mut files = vec![("pass.json".to_owned(), json)];
        files.extend(
            self.images
                .iter()
                .map(|(name, bytes)| ((*name).to_owned(), bytes.clone())),
        );
        for locale in &LOCALES {
            let strings = locale.strings(pass, self.settings.demo);
            files.push((
                format!("{}.lproj/pass.strings", locale.lproj),
                strings_file(&strings).into_bytes(),
            ));
        }
        Ok(files)
    }

    /// The signed .pkpass archive for one member.
    pub fn build(&self, pass: &PassMember<'_>) -> Result<Vec<u8>, PassError> {
        let files = self.files(pass)?;
        let manifest = manifest(&files)?;
        let signature = self.signer.sign_detached(&manifest, pass.now)?;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let zip_err = |e: &dyn std::fmt::Display| PassError::Sign(format!("zip: {e}"));
        for (name, bytes) in files
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .chain([
                ("manifest.json", manifest.as_slice()),
                ("signature", &signature),
            ])
        {
            zip.start_file(name, options).map_err(|e| zip_err(&e))?;
            zip.write_all(bytes).map_err(|e| zip_err(&e))?;
        }
        Ok(zip.finish().map_err(|e| zip_err(&e))?.into_inner())
    }

    /// Builds the pass and writes it to `path` whole, or not at all.
    pub fn write(&self, pass: &PassMember<'_>, path: &Path) -> Result<(), PassError> {
        let bytes = self.build(pass)?;
        write_atomically(path, &bytes)
    }
}

/// `manifest.json`: lower-case hex SHA-1 of every file, keyed by its path in the archive.
pub fn manifest(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, PassError> {
    let hashes: BTreeMap<&str, String> = files
        .iter()
        .map(|(name, bytes)| {
            (
                name.as_str(),
                data_encoding::HEXLOWER.encode(&Sha1::digest(bytes)),
            )
        })
        .collect();
    serde_json::to_vec(&hashes).map_err(|e| PassError::Sign(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Program, Timestamp};
    use crate::pass::fixture;

    fn settings() -> AppleSettings {
        AppleSettings {
            pass_type_identifier: "pass.test.tillpass".into(),
            team_identifier: "TEAM000001".into(),
            web_service_url: None,
            nfc_encryption_public_key: None,
            images: None,
            demo: false,
        }
    }

    #[test]
    fn the_pass_shows_an_open_offer_in_front_and_the_badges_on_the_back() {
        let program = Program::demo();
        let member = fixture::member();
        let summary = fixture::summary(420);
        let offers = [(
            "A free pastry".to_owned(),
            Timestamp::from_millis(1_796_860_800_000),
        )];
        let badges = ["Regular".to_owned(), "Explorer".to_owned()];
        let pass = PassMember {
            program: &program,
            member: &member,
            summary: &summary,
            code: "TP1.0123456789.ABCDEFGHIJKLMNOP",
            auth_token: "0123456789abcdef0123",
            voided: false,
            now: Timestamp::from_millis(0),
            stamps: &Default::default(),
            offers: &offers,
            badges: &badges,
        };
        let json = pass_json(&settings(), &pass).expect("pass.json");
        let offer = json
            .store_card
            .auxiliary_fields
            .iter()
            .find(|f| f.key == "offer")
            .expect("the offer in front");
        assert_eq!(offer.value, FieldValue::Text(key::OFFER_VALUE.into()));
        assert!(
            json.store_card
                .back_fields
                .iter()
                .any(|f| f.key == "badges")
        );
        let strings = &crate::pass::locale::LOCALES[0].strings(&pass, false);
        assert_eq!(strings[key::OFFER_VALUE], "A free pastry until 2026-12-10");
        assert_eq!(strings[key::BADGES_VALUE], "Regular, Explorer");
        let french = &crate::pass::locale::LOCALES[1].strings(&pass, false);
        assert_eq!(
            french[key::OFFER_VALUE],
            "A free pastry jusqu'au 2026-12-10"
        );
    }

    #[test]
    fn the_pass_shows_each_stamp_card_as_a_row_of_stamps() {
        let program = Program::demo();
        let member = fixture::member();
        let summary = fixture::summary(420);
        let stamps = std::collections::BTreeMap::from([("coffee".to_owned(), 5)]);
        let pass = PassMember {
            program: &program,
            member: &member,
            summary: &summary,
            code: "TP1.0123456789.ABCDEFGHIJKLMNOP",
            auth_token: "0123456789abcdef0123",
            voided: false,
            now: Timestamp::from_millis(0),
            stamps: &stamps,
            offers: &[],
            badges: &[],
        };
        let json = pass_json(&settings(), &pass).expect("pass.json");
        let row = json
            .store_card
            .auxiliary_fields
            .iter()
            .find(|f| f.label.as_deref() == Some(key::STAMP_CARDS[0]))
            .expect("the stamp card");
        assert_eq!(row.value, FieldValue::Text("●●●●●○○○○ 5/9".into()));
    }

    #[test]
    fn pass_json_carries_the_member_code_balance_and_tier_colour() {
        let program = Program::demo();
        let member = fixture::member();
        let summary = fixture::summary(420);
        let pass = PassMember {
            program: &program,
            member: &member,
            summary: &summary,
            code: "TP1.0123456789.ABCDEFGHIJKLMNOP",
            auth_token: "0123456789abcdef0123",
            voided: false,
            now: Timestamp::from_millis(0),
            stamps: &Default::default(),
            offers: &[],
            badges: &[],
        };
        let json = pass_json(&settings(), &pass).expect("pass.json");
        assert_eq!(json.barcodes[0].message, pass.code);
        assert_eq!(
            json.store_card.header_fields[0].value,
            FieldValue::Number(420)
        );
        assert_eq!(json.background_color, "rgb(46, 125, 50)");
        assert_eq!(json.foreground_color, "rgb(255, 255, 255)");
        assert!(json.web_service_url.is_none() && json.authentication_token.is_none());
        assert!(json.nfc.is_none());

        let mut with_service = settings();
        with_service.web_service_url = Some("https://example.com/passkit".into());
        with_service.nfc_encryption_public_key = Some("MFkw".into());
        let json = pass_json(&with_service, &pass).expect("pass.json");
        assert_eq!(json.authentication_token.as_deref(), Some(pass.auth_token));
        assert_eq!(json.nfc.map(|n| n.message).as_deref(), Some(pass.code));
    }

    #[test]
    fn light_tiers_get_dark_text() {
        assert_eq!(text_colours([250, 240, 200]).0, [20, 20, 20]);
        assert_eq!(text_colours([10, 10, 10]).0, [255, 255, 255]);
    }

    #[test]
    fn manifest_hashes_are_lower_case_sha1() {
        let files = vec![("a.txt".to_owned(), b"abc".to_vec())];
        let manifest = String::from_utf8(manifest(&files).expect("manifest")).expect("utf-8");
        assert_eq!(
            manifest,
            r#"{"a.txt":"a9993e364706816aba3e25717850c26c9cd0d89d"}"#
        );
    }
}
