//! Issuing wallet passes for stored members: joins the [`store`](crate::store) (member, live
//! balance, member code, pass secret) with the [`pass`](crate::pass) formats.

use std::path::{Path, PathBuf};

use crate::domain::{MemberId, Program, Timestamp};
use crate::pass::{PassContent, PassError, WalletSetup};
use crate::store::{Store, StoreError};

/// The wallet config file looked for beside the till's store.
pub const CONFIG_FILE: &str = "wallet.toml";
/// The folder beside the store where the demo signing chain lives.
pub const DEMO_DIR: &str = "wallet-demo";

/// Where the wallet config is: `explicit`, else `wallet.toml` beside the store if present
/// (`None` means demo mode).
pub fn config_path(explicit: Option<&Path>, db: &Path) -> Option<PathBuf> {
    explicit.map(Path::to_path_buf).or_else(|| {
        let beside = db.parent()?.join(CONFIG_FILE);
        beside.exists().then_some(beside)
    })
}

/// Loads the wallet setup for the store at `db` running `program`.
pub fn load(
    explicit: Option<&Path>,
    db: &Path,
    program: &Program,
    now: Timestamp,
) -> Result<WalletSetup, PassError> {
    let demo_dir = db
        .parent()
        .map_or_else(|| PathBuf::from(DEMO_DIR), |d| d.join(DEMO_DIR));
    WalletSetup::load(
        config_path(explicit, db).as_deref(),
        &demo_dir,
        program,
        now,
    )
}

/// Reads the member's pass content from the till's store as of `now`.
pub fn read_content(
    store: &Store,
    member: MemberId,
    now: Timestamp,
) -> Result<PassContent, StoreError> {
    let view = store.member(member)?;
    let (offers, badges) = PassContent::facts(store.program(), &store.entries_of(member)?, now);
    Ok(PassContent {
        offers,
        badges,
        program: store.program().clone(),
        summary: store.summary_at(member, now)?,
        code: store.member_code(&view.member.card),
        auth_token: store.pass_auth_token(view.member.card.as_str()),
        stamps: store.stamps_held(member)?,
        member: view.member,
        voided: false,
        now,
    })
}

/// Writes the member's signed .pkpass to `out` (whole or not at all).
pub fn write_apple_pass(
    setup: &WalletSetup,
    content: &PassContent,
    out: &Path,
) -> Result<(), PassError> {
    let maker = setup
        .apple
        .as_ref()
        .ok_or(PassError::NotConfigured("[apple]"))?;
    maker.write(&content.pass(), out)
}

/// The member's "Save to Google Wallet" link.
pub fn google_save_url(setup: &WalletSetup, content: &PassContent) -> Result<String, PassError> {
    let maker = setup
        .google
        .as_ref()
        .ok_or(PassError::NotConfigured("[google]"))?;
    maker.save_url(&content.pass())
}
