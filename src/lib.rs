//! Tillpass: a point-of-sale companion for customer loyalty programs.
//!
//! The crate is layered; every layer depends inward on [`domain`] only:
//! - [`domain`]: pure types and rules (program, ledger entries, earning, tiers, expiry). No IO.
//! - [`store`]: the till's SQLite store (append-only ledger, members, derived balance cache).
//! - [`token`]: member codes (signed QR/NFC payloads), QR render/decode, NDEF, tag UIDs.
//! - [`pass`]: wallet passes: signed Apple .pkpass files and Google Wallet save links.
//! - `ui`: the egui till app (cashier, enrol, customer display, manager); disk work on a worker.
//!   Built with the default `app` feature only, so a server build has no GUI crate.
//! - [`wallet`]: issues passes for stored members (joins `store` and `pass`).
//! - [`sync`]: the sync wire format, the till's HTTP client, one sync round, the app's worker.
//! - [`server`]: the central server (axum) on SQLite or PostgreSQL, with its own SQL.
//! - [`pos`]: the till's local integration API (HTTP on loopback) for point-of-sale systems.
//! - [`demo`]: realistic demo members and history, made through the program's own rules.

pub mod demo;
pub mod domain;
pub mod pass;
pub mod pos;
pub mod server;
pub mod store;
pub mod sync;
pub mod token;
#[cfg(feature = "app")]
pub mod ui;
pub mod wallet;
