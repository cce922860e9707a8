//! NDEF (NFC Data Exchange Format) parsing, for tags that carry the member code as a Text or URI
//! record, following the NFC Forum record layout and the Type 2 tag TLV wrapping.

use thiserror::Error;

/// Why tag bytes are not a usable NDEF message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NdefError {
    #[error("the tag is empty")]
    Empty,
    #[error("the NDEF data ends early (byte {0})")]
    Truncated(usize),
    #[error("chunked NDEF records are not supported")]
    Chunked,
    #[error("the text record is not valid {0}")]
    Encoding(&'static str),
    #[error("the tag holds no NDEF message")]
    NoMessage,
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NdefRecord {
    /// Well-known type `T`.
    Text { language: String, text: String },
    /// Well-known type `U`, with its abbreviated prefix expanded.
    Uri(String),
    /// Any other record, kept by its TNF and type.
    Other { tnf: u8, record_type: Vec<u8> },
}

const TNF_WELL_KNOWN: u8 = 0x01;

/// URI identifier codes 0x00..=0x23 (NFC Forum URI Record Type Definition).
const URI_PREFIXES: [&str; 36] = [
    "",
    "http://www.",
    "https://www.",
    "http://",
    "https://",
    "tel:",
    "mailto:",
    "ftp://anonymous:anonymous@",
    "ftp://ftp.",
    "ftps://",
    "sftp://",
    "smb://",
    "nfs://",
    "ftp://",
    "dav://",
    "news:",
    "telnet://",
    "imap:",
    "rtsp://",
    "urn:",
    "pop:",
    "sip:",
    "sips:",
    "tftp:",
    "btspp://",
    "btl2cap://",
    "btgoep://",
    "tcpobex://",
    "irdaobex://",
    "file://",
    "urn:epc:id:",
    "urn:epc:tag:",
    "urn:epc:pat:",
    "urn:epc:raw:",
    "urn:epc:",
    "urn:nfc:",
];

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], NdefError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or(NdefError::Truncated(self.at))?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(NdefError::Truncated(self.at))?;
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, NdefError> {
        Ok(self.take(1)?[0])
    }
}

/// Parses an NDEF message (a sequence of records, the first with MB, the last with ME).
pub fn parse_message(bytes: &[u8]) -> Result<Vec<NdefRecord>, NdefError> {
    if bytes.is_empty() {
        return Err(NdefError::Empty);
    }
    let mut cur = Cursor { bytes, at: 0 };
    let mut records = Vec::new();
    loop {
        let header = cur.byte()?;
        let (last, chunked, short, has_id, tnf) = (
            header & 0x40 != 0,
            header & 0x20 != 0,
            header & 0x10 != 0,
            header & 0x08 != 0,
            header & 0x07,
        );
        if chunked || tnf == 0x06 {
            return Err(NdefError::Chunked);
        }
        let type_len = usize::from(cur.byte()?);
        let payload_len = if short {
            usize::from(cur.byte()?)
        } else {
            let b = cur.take(4)?;
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        };
        let id_len = if has_id { usize::from(cur.byte()?) } else { 0 };
        let record_type = cur.take(type_len)?;
        cur.take(id_len)?;
        let payload = cur.take(payload_len)?;
        records.push(decode_record(tnf, record_type, payload)?);
        if last || cur.at == bytes.len() {
            return Ok(records);
        }
    }
}

fn decode_record(tnf: u8, record_type: &[u8], payload: &[u8]) -> Result<NdefRecord, NdefError> {
    match (tnf, record_type) {
        (TNF_WELL_KNOWN, b"T") => {
            let (&status, rest) = payload.split_first().ok_or(NdefError::Truncated(0))?;
            let lang_len = usize::from(status & 0x3F);
            let language = rest.get(..lang_len).ok_or(NdefError::Truncated(1))?;
            let body = &rest[lang_len..];
            let text = if status & 0x80 == 0 {
                String::from_utf8(body.to_vec()).map_err(|_| NdefError::Encoding("UTF-8"))?
            } else {
                decode_utf16(body)?
            };
            Ok(NdefRecord::Text {
                language: String::from_utf8_lossy(language).into_owned(),
                text,
            })
        }
        (TNF_WELL_KNOWN, b"U") => {
            let (&code, rest) = payload.split_first().ok_or(NdefError::Truncated(0))?;
            let prefix = URI_PREFIXES.get(usize::from(code)).copied().unwrap_or("");
            let rest = std::str::from_utf8(rest).map_err(|_| NdefError::Encoding("UTF-8"))?;
            Ok(NdefRecord::Uri(format!("{prefix}{rest}")))
        }
        _ => Ok(NdefRecord::Other {
            tnf,
            record_type: record_type.to_vec(),
        }),
    }
}

/// UTF-16 text: big-endian unless a byte-order mark says otherwise.
fn decode_utf16(body: &[u8]) -> Result<String, NdefError> {
    if !body.len().is_multiple_of(2) {
        return Err(NdefError::Encoding("UTF-16"));
    }
    let (little, body) = match body {
        [0xFF, 0xFE, rest @ ..] => (true, rest),
        [0xFE, 0xFF, rest @ ..] => (false, rest),
        _ => (false, body),
    };
    let units: Vec<u16> = body
        .chunks_exact(2)
        .map(|p| {
            if little {
                u16::from_le_bytes([p[0], p[1]])
            } else {
                u16::from_be_bytes([p[0], p[1]])
            }
        })
        .collect();
    String::from_utf16(&units).map_err(|_| NdefError::Encoding("UTF-16"))
}

/// Finds and parses the NDEF message TLV in a Type 2 tag's data area (e.g. NTAG213 pages 4+).
pub fn parse_tag_memory(bytes: &[u8]) -> Result<Vec<NdefRecord>, NdefError> {
    let mut cur = Cursor { bytes, at: 0 };
    while cur.at < bytes.len() {
        let tlv = cur.byte()?;
        match tlv {
            0x00 => continue,
            0xFE => break,
            _ => {
                let mut len = usize::from(cur.byte()?);
                if len == 0xFF {
                    let b = cur.take(2)?;
                    len = usize::from(u16::from_be_bytes([b[0], b[1]]));
                }
                let value = cur.take(len)?;
                if tlv == 0x03 {
                    return parse_message(value);
                }
            }
        }
    }
    Err(NdefError::NoMessage)
}

/// Texts in the records that may be a member code: each Text record, and for each URI the URI,
/// its last path segment and its query values (`https://x.example/m/TP1...` or `?code=TP1...`).
pub fn code_candidates(records: &[NdefRecord]) -> Vec<String> {
    let mut out = Vec::new();
    for r in records {
        match r {
            NdefRecord::Text { text, .. } => out.push(text.trim().to_owned()),
            NdefRecord::Uri(uri) => {
                out.push(uri.clone());
                let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
                if let Some(last) = path.trim_end_matches('/').rsplit('/').next() {
                    out.push(last.to_owned());
                }
                out.extend(
                    query
                        .split('&')
                        .filter_map(|kv| kv.split_once('=').map(|(_, v)| v.to_owned())),
                );
            }
            NdefRecord::Other { .. } => {}
        }
    }
    out
}

/// Builds a short NDEF record (used by tests and tag-writing tools).
pub fn short_record(
    first: bool,
    last: bool,
    tnf: u8,
    record_type: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut header = 0x10 | (tnf & 0x07);
    if first {
        header |= 0x80;
    }
    if last {
        header |= 0x40;
    }
    let mut out = vec![header, record_type.len() as u8, payload.len() as u8];
    out.extend_from_slice(record_type);
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_record(text: &str) -> Vec<u8> {
        let mut payload = vec![0x02, b'e', b'n'];
        payload.extend_from_slice(text.as_bytes());
        short_record(true, true, TNF_WELL_KNOWN, b"T", &payload)
    }

    #[test]
    fn text_record_from_the_spec_layout() {
        // D1 01 len 54 02 65 6E ...: MB|ME|SR, well-known, type "T", UTF-8, language "en".
        let bytes = text_record("TP1.1234567897.ABCDEFGHIJKLMNOP");
        assert_eq!(&bytes[..2], &[0xD1, 0x01]);
        assert_eq!(
            parse_message(&bytes),
            Ok(vec![NdefRecord::Text {
                language: "en".into(),
                text: "TP1.1234567897.ABCDEFGHIJKLMNOP".into()
            }])
        );
    }

    #[test]
    fn uri_record_with_prefix_and_tlv_wrapping() {
        let mut payload = vec![0x04];
        payload.extend_from_slice(b"loyalty.example/m/TP1.1234567897.ABCDEFGHIJKLMNOP");
        let message = short_record(true, true, TNF_WELL_KNOWN, b"U", &payload);
        // Lock-control TLV, then the NDEF TLV, then the terminator, then unused memory.
        let mut memory = vec![0x01, 0x03, 0xA0, 0x0C, 0x34, 0x03, message.len() as u8];
        memory.extend_from_slice(&message);
        memory.extend_from_slice(&[0xFE, 0x00, 0x00]);
        let records = parse_tag_memory(&memory).expect("parse");
        assert_eq!(
            records,
            vec![NdefRecord::Uri(
                "https://loyalty.example/m/TP1.1234567897.ABCDEFGHIJKLMNOP".into()
            )]
        );
        assert!(code_candidates(&records).contains(&"TP1.1234567897.ABCDEFGHIJKLMNOP".to_owned()));
    }

    #[test]
    fn utf16_and_multiple_records() {
        let mut payload = vec![0x80 | 0x02, b'd', b'e', 0xFE, 0xFF];
        for unit in "Grüße".encode_utf16() {
            payload.extend_from_slice(&unit.to_be_bytes());
        }
        let mut bytes = short_record(true, false, 0x02, b"text/plain", b"hi");
        bytes.extend(short_record(false, true, TNF_WELL_KNOWN, b"T", &payload));
        let records = parse_message(&bytes).expect("parse");
        assert_eq!(records.len(), 2);
        assert_eq!(
            records[1],
            NdefRecord::Text {
                language: "de".into(),
                text: "Grüße".into()
            }
        );
    }

    #[test]
    fn long_record_and_id_field() {
        // Not short: 4-byte payload length; IL set with a 1-byte id.
        let mut bytes = vec![
            0x80 | 0x40 | 0x08 | TNF_WELL_KNOWN,
            1,
            0,
            0,
            0,
            4,
            1,
            b'T',
            b'#',
        ];
        bytes.extend_from_slice(&[0x02, b'e', b'n', b'X']);
        assert_eq!(
            parse_message(&bytes),
            Ok(vec![NdefRecord::Text {
                language: "en".into(),
                text: "X".into()
            }])
        );
    }

    #[test]
    fn malformed_bytes_are_refused() {
        assert_eq!(parse_message(&[]), Err(NdefError::Empty));
        assert!(matches!(
            parse_message(&[0xD1, 0x01, 0x20, b'T']),
            Err(NdefError::Truncated(_))
        ));
        assert_eq!(
            parse_message(&[0xB1, 0x01, 0x00, b'T']),
            Err(NdefError::Chunked)
        );
        assert_eq!(
            parse_tag_memory(&[0x00, 0x00, 0xFE]),
            Err(NdefError::NoMessage)
        );
        let bad_utf8 = short_record(true, true, TNF_WELL_KNOWN, b"T", &[0x02, b'e', b'n', 0xFF]);
        assert_eq!(parse_message(&bad_utf8), Err(NdefError::Encoding("UTF-8")));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_message(&bytes);
            let _ = parse_tag_memory(&bytes);
        }
    }
}
