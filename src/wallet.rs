//! Issuing wallet passes for stored members: joins the [`store`](crate::store) (member, live
//! balance, member code, pass secret) with the [`pass`](crate::pass) formats.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::domain::{MemberId, Timestamp};
use crate::pass::{PassError, PassMember, WalletSetup};
use crate::store::{Store, StoreError};

/// The wallet config file looked for beside the till's store.
pub const CONFIG_FILE: &str = "wallet.toml";
/// The folder beside the store where the demo signing chain lives.
pub const DEMO_DIR: &str = "wallet-demo";

/// Why a pass could not be issued.
#[derive(Debug, Error)]
pub enum WalletError {
    #[error(transparent)]
    Pass(#[from] PassError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the wallet config is: `explicit`, else `wallet.toml` beside the store if present
/// (`None` means demo mode).
pub fn config_path(explicit: Option<&Path>, db: &Path) -> Option<PathBuf> {
    explicit.map(Path::to_path_buf).or_else(|| {
        let beside = db.parent()?.join(CONFIG_FILE);
        beside.exists().then_some(beside)
    })
}

/// Loads the wallet setup for the store at `db`.
pub fn load(
    explicit: Option<&Path>,
    store: &Store,
    now: Timestamp,
) -> Result<WalletSetup, PassError> {
    let db = store.path();
    let demo_dir = db
        .parent()
        .map_or_else(|| PathBuf::from(DEMO_DIR), |d| d.join(DEMO_DIR));
    WalletSetup::load(
        config_path(explicit, db).as_deref(),
        &demo_dir,
        store.program(),
        now,
    )
}

fn with_pass<T>(
    store: &Store,
    member: MemberId,
    now: Timestamp,
    f: impl FnOnce(&PassMember<'_>) -> Result<T, PassError>,
) -> Result<T, WalletError> {
    let view = store.member(member)?;
    let summary = store.summary_at(member, now)?;
    let code = store.member_code(&view.member.card);
    let auth_token = store.pass_auth_token(&member);
    let pass = PassMember {
        program: store.program(),
        member: &view.member,
        summary: &summary,
        code: &code,
        auth_token: &auth_token,
        now,
    };
    Ok(f(&pass)?)
}

/// Writes the member's signed .pkpass to `out` (whole or not at all).
pub fn write_apple_pass(
    setup: &WalletSetup,
    store: &Store,
    member: MemberId,
    now: Timestamp,
    out: &Path,
) -> Result<(), WalletError> {
    let maker = setup
        .apple
        .as_ref()
        .ok_or(PassError::NotConfigured("[apple]"))?;
    with_pass(store, member, now, |pass| maker.write(pass, out))
}

/// The member's "Save to Google Wallet" link.
pub fn google_save_url(
    setup: &WalletSetup,
    store: &Store,
    member: MemberId,
    now: Timestamp,
) -> Result<String, WalletError> {
    let maker = setup
        .google
        .as_ref()
        .ok_or(PassError::NotConfigured("[google]"))?;
    with_pass(store, member, now, |pass| maker.save_url(pass))
}
