//! Server settings: flags, then environment (both through clap), then a TOML file, then defaults.

use std::path::Path;

use serde::Deserialize;

/// `--config FILE`: the same settings as the flags.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub db: Option<String>,
    pub listen: Option<String>,
    pub log: Option<String>,
    /// The wallet config (`wallet.toml`): passes signed and kept live by this server.
    pub wallet: Option<std::path::PathBuf>,
    /// The server's public HTTPS address, for pass links and the PassKit web service.
    pub public_url: Option<String>,
}

impl FileConfig {
    /// Reads the file; errors name it and the field.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let de =
            toml::Deserializer::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_path_to_error::deserialize(de)
            .map_err(|e| format!("{}: {}: {}", path.display(), e.path(), e.inner().message()))
    }
}

/// The default database: a SQLite file in the working directory.
pub const DEFAULT_DB: &str = "sqlite:tillpass-server.sqlite3";
/// The default address: loopback only, until an operator opens it up.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
