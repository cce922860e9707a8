//! Causes members may give points to (a food bank, a school): the program lists them, a
//! `donation` entry records the gift, and the manager sees the totals per cause.

use serde::{Deserialize, Serialize};

use super::program::ConfigError;

/// A cause of the program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cause {
    /// Short stable id, recorded on donation entries.
    pub id: String,
    pub name: String,
}

/// `[[causes]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCause {
    id: String,
    name: String,
}

/// Validates `[[causes]]`.
pub(super) fn causes(raw: Vec<RawCause>) -> Result<Vec<Cause>, ConfigError> {
    let mut out: Vec<Cause> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("causes[{i}].{f}");
        let id = r.id.trim().to_owned();
        if id.is_empty()
            || id.len() > 40
            || !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(ConfigError::field(
                at("id"),
                format!("must be 1-40 characters of a-z, 0-9, - or _, got {id:?}"),
            ));
        }
        if out.iter().any(|c| c.id == id) {
            return Err(ConfigError::field(
                at("id"),
                format!("{id:?} is used twice"),
            ));
        }
        let name = r.name.trim().to_owned();
        if name.is_empty() || name.len() > 80 {
            return Err(ConfigError::field(at("name"), "must be 1-80 characters"));
        }
        out.push(Cause { id, name });
    }
    Ok(out)
}
