//! Causes members may give points to (a food bank, a school): the program lists them, a
//! `donation` entry records the gift, and the manager sees the totals per cause.

use serde::{Deserialize, Serialize};

use super::program::{ConfigError, short_name, stable_id};

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
        let id = stable_id(&at("id"), &r.id, out.iter().map(|x| x.id.as_str()))?;
        let name = short_name(&at("name"), &r.name)?;
        out.push(Cause { id, name });
    }
    Ok(out)
}
