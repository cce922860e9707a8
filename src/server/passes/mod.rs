//! Wallet passes kept live on customers' phones from the server.

pub mod google;
