//! The storeCard images (icon, logo, strip at 1x/2x/3x): built in from `assets/pass/`, or read
//! from a configured folder holding the same file names.

use std::path::Path;

use super::PassError;

/// Every image a storeCard pass carries, by its file name in the pass.
pub(crate) const NAMES: [&str; 9] = [
    "icon.png",
    "icon@2x.png",
    "icon@3x.png",
    "logo.png",
    "logo@2x.png",
    "logo@3x.png",
    "strip.png",
    "strip@2x.png",
    "strip@3x.png",
];

const BUILT_IN: [&[u8]; 9] = [
    include_bytes!("../../assets/pass/icon.png"),
    include_bytes!("../../assets/pass/icon@2x.png"),
    include_bytes!("../../assets/pass/icon@3x.png"),
    include_bytes!("../../assets/pass/logo.png"),
    include_bytes!("../../assets/pass/logo@2x.png"),
    include_bytes!("../../assets/pass/logo@3x.png"),
    include_bytes!("../../assets/pass/strip.png"),
    include_bytes!("../../assets/pass/strip@2x.png"),
    include_bytes!("../../assets/pass/strip@3x.png"),
];

/// The pass images: `(file name, PNG bytes)`.
pub(crate) fn load(folder: Option<&Path>) -> Result<Vec<(&'static str, Vec<u8>)>, PassError> {
    NAMES
        .iter()
        .zip(BUILT_IN)
        .map(|(name, built_in)| match folder {
            None => Ok((*name, built_in.to_vec())),
            Some(dir) => {
                let path = dir.join(name);
                let bytes = std::fs::read(&path).map_err(|_| PassError::MissingImage {
                    path: path.display().to_string(),
                })?;
                if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
                    return Err(PassError::Read {
                        path: path.display().to_string(),
                        reason: "not a PNG image".into(),
                    });
                }
                Ok((*name, bytes))
            }
        })
        .collect()
}
