//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod apns;
pub mod discovery;
pub mod google;
pub mod pkpass;
pub mod server;

use std::path::PathBuf;

use tillpass::domain::{MemberInput, Timestamp};
use tillpass::store::{MemberView, Store};

/// 2026-11-23T12:00:00Z.
pub const NOW: Timestamp = Timestamp::from_millis(1_795_435_200_000);

/// A temporary directory with a database path inside it.
pub struct TempDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TempDb {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("till.sqlite3");
        Self { dir, path }
    }

    pub fn open(&self) -> Store {
        Store::open(&self.path).expect("open store")
    }
}

/// Enrols a member with just a name.
pub fn enrol(store: &mut Store, name: &str) -> MemberView {
    let input = MemberInput {
        name: name.to_owned(),
        ..Default::default()
    };
    store.add_member(input, "test", NOW).expect("enrol")
}
