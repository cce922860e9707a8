//! Sync between tills and the central server: the wire format, the till's HTTP client, one sync
//! round, and the background worker the app runs.

pub mod client;
pub mod engine;
pub mod join;
pub mod protocol;
pub mod tls;
pub mod worker;

pub use client::{SyncClient, SyncError};
pub use engine::{
    SyncReport, catch_up_member, client_for, join, join_then_catch_up, live_balance, look_up_card,
    sync_once,
};
