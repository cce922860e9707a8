//! A .pkpass read back and checked as Apple would: its files, the manifest's SHA-1s, and the
//! signature with `openssl cms -verify`.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;
use std::process::Command;

use sha1::{Digest as _, Sha1};

/// The files of the .pkpass at `path`.
pub fn unzip(path: &Path) -> BTreeMap<String, Vec<u8>> {
    unzip_bytes(&std::fs::read(path).expect("open pass"))
}

/// The files of a .pkpass, each checked to be stored uncompressed.
pub fn unzip_bytes(pkpass: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(pkpass)).expect("a zip archive");
    (0..archive.len())
        .map(|i| {
            let mut entry = archive.by_index(i).expect("zip entry");
            let name = entry.name().expect("entry name").into_owned();
            assert_eq!(
                entry.compression(),
                zip::CompressionMethod::Stored,
                "{name} is compressed"
            );
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).expect("read entry");
            (name, bytes)
        })
        .collect()
}

/// Writes the files into `dir`.
pub fn extract(files: &BTreeMap<String, Vec<u8>>, dir: &Path) {
    for (name, bytes) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write entry");
    }
}

/// Every file but manifest.json and signature is in the manifest with its SHA-1, and nothing
/// else is listed.
pub fn manifest_matches(files: &BTreeMap<String, Vec<u8>>) -> bool {
    let Ok(manifest) = serde_json::from_slice::<BTreeMap<String, String>>(&files["manifest.json"])
    else {
        return false;
    };
    let hashed: BTreeMap<String, String> = files
        .iter()
        .filter(|(name, _)| *name != "manifest.json" && *name != "signature")
        .map(|(name, bytes)| (name.clone(), hex(&Sha1::digest(bytes))))
        .collect();
    manifest == hashed
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `openssl cms -verify` of `signature` over `manifest.json` against `root`.
pub fn openssl_verifies(dir: &Path, root: &Path) -> bool {
    let out = Command::new("openssl")
        .args([
            "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any",
        ])
        .arg("-in")
        .arg(dir.join("signature"))
        .arg("-content")
        .arg(dir.join("manifest.json"))
        .arg("-CAfile")
        .arg(root)
        .args(["-out", "/dev/null"])
        .output()
        .expect("run openssl");
    out.status.success()
}

/// The manifest lists every file with its SHA-1, and `openssl cms -verify` checks the signature
/// over it against `root`.
pub fn pass_verifies(files: &BTreeMap<String, Vec<u8>>, root: &Path) -> bool {
    let dir = tempfile::tempdir().expect("temp dir");
    extract(files, dir.path());
    manifest_matches(files) && openssl_verifies(dir.path(), root)
}
