//! The PC/SC pseudo-APDUs contactless readers (ACR122U, ACR1252U, HID Omnikey and most CCID
//! readers) accept for NFC tags, and reading an NTAG21x data area with them. Pure byte work; the
//! transport is in `pcsc_reader` behind the `pcsc` feature.

use thiserror::Error;

/// Asks the reader for the tag's UID.
pub const GET_UID: [u8; 5] = [0xFF, 0xCA, 0x00, 0x00, 0x00];
/// First user-data page of an NTAG21x / Type 2 tag.
pub const FIRST_DATA_PAGE: u8 = 4;
/// Bytes one READ BINARY returns on a Type 2 tag (four 4-byte pages).
pub const READ_BYTES: u8 = 16;
/// Stop after this many pages even without a terminator (NTAG216 has 222 user pages).
pub const MAX_PAGES: u16 = 232;

/// A reader's refusal of a command.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApduError {
    #[error("the reader's answer is too short")]
    Short,
    #[error("the reader refused the command (status {0:02X}{1:02X})")]
    Status(u8, u8),
}

/// READ BINARY of 16 bytes starting at `page`.
pub fn read_binary(page: u8) -> [u8; 5] {
    [0xFF, 0xB0, 0x00, page, READ_BYTES]
}

/// The data of a response whose status word is 90 00.
pub fn response_data(response: &[u8]) -> Result<&[u8], ApduError> {
    match response {
        [data @ .., 0x90, 0x00] => Ok(data),
        [.., sw1, sw2] => Err(ApduError::Status(*sw1, *sw2)),
        _ => Err(ApduError::Short),
    }
}

/// True once `memory` (from page 4 on) holds a complete TLV sequence: the terminator TLV, or an
/// NDEF TLV whose declared length has been read in full.
pub fn tlv_complete(memory: &[u8]) -> bool {
    let mut at = 0;
    while let Some(&tag) = memory.get(at) {
        match tag {
            0x00 => at += 1,
            0xFE => return true,
            _ => {
                let Some(&len) = memory.get(at + 1) else {
                    return false;
                };
                let (len, header) = if len == 0xFF {
                    match memory.get(at + 2..at + 4) {
                        Some(b) => (usize::from(u16::from_be_bytes([b[0], b[1]])), 4),
                        None => return false,
                    }
                } else {
                    (usize::from(len), 2)
                };
                let end = at + header + len;
                if tag == 0x03 {
                    return memory.len() >= end;
                }
                at = end;
            }
        }
    }
    false
}

/// Upper-case hex, as keyboard-mode readers type UIDs.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words() {
        assert_eq!(
            response_data(&[0x04, 0xA2, 0x90, 0x00]),
            Ok(&[0x04, 0xA2][..])
        );
        assert_eq!(
            response_data(&[0x63, 0x00]),
            Err(ApduError::Status(0x63, 0x00))
        );
        assert_eq!(response_data(&[0x90]), Err(ApduError::Short));
        assert_eq!(read_binary(4), [0xFF, 0xB0, 0x00, 0x04, 0x10]);
    }

    #[test]
    fn knows_when_the_ndef_message_is_in() {
        let message_len = 20;
        let mut memory = vec![0x01, 0x03, 0xA0, 0x0C, 0x34, 0x03, message_len];
        assert!(!tlv_complete(&memory));
        memory.extend(vec![0xD1; usize::from(message_len) - 1]);
        assert!(!tlv_complete(&memory));
        memory.push(0xD1);
        assert!(tlv_complete(&memory));
        assert!(tlv_complete(&[0x00, 0xFE]));
        assert!(!tlv_complete(&[0x03, 0xFF, 0x01]));
    }

    #[test]
    fn uid_hex() {
        assert_eq!(hex(&[0x04, 0xa2, 0x24]), "04A224");
    }
}
