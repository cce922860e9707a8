//! Member identification: the signed member code carried by QR codes, wallet passes and NFC
//! tags; QR rendering and decoding; NDEF tag parsing; NFC reader UIDs.

pub mod apdu;
#[cfg(feature = "camera")]
pub mod camera;
pub mod code;
pub mod ndef;
#[cfg(feature = "pcsc")]
pub mod pcsc_reader;
pub mod qr;
pub mod uid;

pub use code::{CODE_PREFIX, CodeError, CodeKey, Keyring, member_code, parse_member_code};
