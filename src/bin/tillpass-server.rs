//! `tillpass-server`: the central server tills sync with, and its admin commands.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use tillpass::domain::{Program, Timestamp};
use tillpass::pass::google::ServiceAccountKey;
use tillpass::pass::{WalletConfig, WalletSetup};
use tillpass::server::acme::{Acme, AcmeSettings};
use tillpass::server::audit;
use tillpass::server::config::{DEFAULT_DB, DEFAULT_LISTEN, FileConfig};
use tillpass::server::passes::apns::{self, ApnsSettings};
use tillpass::server::passes::google::{self, GoogleEndpoints};
use tillpass::server::passes::{PassService, PassSettings};
use tillpass::server::pg_tls;
use tillpass::server::{Db, new_token, serve, token_hash};
use tillpass::sync::protocol::ConfigQuery;

/// Tillpass central server: one ordered, append-only points ledger for every till.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// sqlite:PATH (one shop) or postgres://USER:PASS@HOST/DB (a chain) [default: sqlite:tillpass-server.sqlite3].
    #[arg(long, global = true, env = "TILLPASS_SERVER_DB")]
    db: Option<String>,
    /// A TOML file with db, listen and log (flags and environment win over it).
    #[arg(long, global = true, env = "TILLPASS_SERVER_CONFIG")]
    config: Option<PathBuf>,
    /// Log format on stderr (filter with RUST_LOG, default info).
    #[arg(long, global = true, env = "TILLPASS_SERVER_LOG")]
    log: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve tills over HTTPS; prints "listening on https://ADDR" and the key pin once ready.
    Serve {
        /// Address to listen on; port 0 picks a free port [default: 127.0.0.1:8443].
        #[arg(long, env = "TILLPASS_SERVER_LISTEN")]
        listen: Option<String>,
        #[command(flatten)]
        tls: TlsArgs,
        #[command(flatten)]
        authority: AcmeArgs,
        /// Plain HTTP, on a loopback address only (behind a TLS-terminating reverse proxy).
        #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "acme"])]
        insecure_http: bool,
        #[command(flatten)]
        wallet: WalletArgs,
    },
    /// Register, revoke and list tills.
    #[command(subcommand)]
    Terminal(TerminalCommand),
    /// Show or replace the program every till runs.
    #[command(subcommand)]
    Program(ProgramCommand),
    /// Write a consistent copy of the SQLite database to PATH while the server runs (PostgreSQL:
    /// use pg_dump). Put back, the copy is noticed by every till, which heals it.
    Backup { path: PathBuf },
    /// After restoring the database from a backup made by other means (pg_dump, a file copy):
    /// give it a new epoch so every till pulls again and pushes what it lacks.
    Restored,
    /// Member-code keys: add one that tills sign new codes with, retire an old one.
    #[command(subcommand)]
    Key(KeyCommand),
    /// What a manager should review: refused pushes, flagged entries and double spends, by
    /// till and day, newest first.
    Audit {
        /// How many days back (by when the server learned of each).
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// One JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Wallet passes this server issues.
    #[command(subcommand)]
    Passes(PassesCommand),
    /// Points members earned with the program's partners, for the whole chain, from the
    /// partner's file (CSV with card, partner, points, reference; or a JSON array): all lines or
    /// none, each refused line named with its reason; every till has them after its next sync.
    PartnerPoints {
        file: PathBuf,
        /// Check every line and say what would be recorded; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The chain's measures over a period, each with its formula (what `tillpass report` gives
    /// for one till, over every till's members and entries).
    Report {
        /// First day, UTC (YYYY-MM-DD) [default: 90 days before --to].
        #[arg(long)]
        from: Option<String>,
        /// The day after the last, UTC (YYYY-MM-DD) [default: tomorrow].
        #[arg(long)]
        to: Option<String>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Checks what the server derives from its ledger against the entries, in one snapshot
    /// (safe while it serves): every member's balance, and the chain report's records and
    /// totals. Exits non-zero on any difference; the next report after a program change
    /// makes the records again.
    Verify {
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Where the server's certificate comes from.
#[derive(clap::Args)]
struct TlsArgs {
    /// PEM certificate chain (leaf first), e.g. from your certificate authority.
    #[arg(long, requires = "tls_key", env = "TILLPASS_SERVER_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long, requires = "tls_cert", env = "TILLPASS_SERVER_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// A publicly trusted certificate for DOMAIN from an ACME authority (Let's Encrypt unless
    /// --acme-directory), kept in the TLS directory and renewed while serving; the authority
    /// checks DOMAIN on port 443, which must reach this server.
    #[arg(long, value_name = "DOMAIN", conflicts_with_all = ["tls_cert", "tls_key"], env = "TILLPASS_SERVER_ACME")]
    acme: Option<String>,
    /// Where the self-signed certificate is made and kept when no certificate is given, and
    /// with --acme the account, key and certificate [default: tillpass-server-tls beside a
    /// SQLite database, else in the working directory].
    #[arg(long, env = "TILLPASS_SERVER_TLS_DIR")]
    tls_dir: Option<PathBuf>,
}

/// Wallet passes this server issues and keeps live.
#[derive(clap::Args)]
struct WalletArgs {
    /// wallet.toml with the Apple and Google keys (see README, "Wallet passes"); without it,
    /// passes are signed by a demo chain (tillpass-server-wallet-demo beside a SQLite
    /// database, else in the working directory) and no phone installs them.
    #[arg(long, env = "TILLPASS_SERVER_WALLET")]
    wallet: Option<PathBuf>,
    /// The public HTTPS address phones reach this server at, for pass links and the PassKit
    /// web service [default: https://DOMAIN with --acme, else https://LISTEN-ADDRESS].
    #[arg(long, env = "TILLPASS_SERVER_PUBLIC_URL")]
    public_url: Option<String>,
}

/// The ACME authority, for `--acme`.
#[derive(clap::Args)]
struct AcmeArgs {
    /// The ACME directory URL.
    #[arg(long, requires = "acme", default_value = tillpass::server::acme::LETS_ENCRYPT, env = "TILLPASS_SERVER_ACME_DIRECTORY")]
    acme_directory: String,
    /// A contact for the ACME account, e.g. mailto:ops@shop.example (repeatable).
    #[arg(
        long,
        requires = "acme",
        env = "TILLPASS_SERVER_ACME_CONTACT",
        value_delimiter = ','
    )]
    acme_contact: Vec<String>,
    /// A PEM root certificate to trust for the ACME directory besides the machine's
    /// authorities (a private or test authority).
    #[arg(long, requires = "acme", env = "TILLPASS_SERVER_ACME_CA_ROOT")]
    acme_ca_root: Option<PathBuf>,
}

impl TlsArgs {
    /// The configured certificate, or the self-signed one (made on first use).
    fn identity(&self, db_url: &str) -> Result<tillpass::server::tls::TlsIdentity> {
        Ok(match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => tillpass::server::tls::load(cert, key)?,
            _ => tillpass::server::tls::self_signed(
                &self.dir(db_url),
                &["localhost".to_owned(), "127.0.0.1".to_owned()],
            )?,
        })
    }

    /// The pin of the key the server presents (with --acme, the key its certificates are kept
    /// with, the same across renewals).
    fn pin(&self, db_url: &str) -> Result<String> {
        if self.acme.is_some() {
            return Ok(tillpass::server::acme::pin(&self.dir(db_url))?);
        }
        Ok(self.identity(db_url)?.pin)
    }

    fn dir(&self, db_url: &str) -> PathBuf {
        self.tls_dir.clone().unwrap_or_else(|| {
            let beside = db_url
                .strip_prefix("sqlite:")
                .and_then(|path| std::path::Path::new(path).parent())
                .filter(|dir| !dir.as_os_str().is_empty());
            beside
                .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf)
                .join("tillpass-server-tls")
        })
    }
}

#[derive(Subcommand)]
enum TerminalCommand {
    /// Register a till; prints its token once (only a hash is stored) and, with --url, a
    /// one-line join code carrying the URL, the token and the server key's pin.
    Add {
        name: String,
        /// The address tills reach this server at, e.g. https://shop.example:8443.
        #[arg(long)]
        url: Option<String>,
        /// Also write the join code as a QR code PNG (for the till's scanner).
        #[arg(long, requires = "url")]
        qr: Option<PathBuf>,
        /// Leave the pin out of the join code: the server has a CA-issued certificate that
        /// tills check against their certificate authorities.
        #[arg(long, requires = "url")]
        no_pin: bool,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Refuse a till's token from now on.
    Revoke { id: i64 },
    /// Give a till a new token (the old one stops working at once); prints it once and, with
    /// --url, a join code. The till keeps its id and everything it has not pushed yet.
    Rotate {
        id: i64,
        /// The address tills reach this server at, for the join code.
        #[arg(long)]
        url: Option<String>,
        /// Also write the join code as a QR code PNG.
        #[arg(long, requires = "url")]
        qr: Option<PathBuf>,
        /// Leave the pin out of the join code (a CA-issued certificate).
        #[arg(long, requires = "url")]
        no_pin: bool,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Every registered till.
    List,
}

#[derive(Subcommand)]
enum PassesCommand {
    /// Pass updates waiting to go out (APNs and Google), and how many of them failed at least
    /// once (the log says why; they are retried with backoff).
    Queue,
    /// Revoke every pass link of the member with card CARD (a link shared by mistake): the
    /// links stop working at once; the till can show a new one. Passes already on phones stay.
    Revoke {
        #[arg(long)]
        card: String,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Add a member-code key; tills adopt it at their next sync and sign new codes and passes
    /// with it, while codes under older keys keep working until retired.
    Rotate,
    /// Retire key ID (0 is the first key, the `TP1.` codes): its codes are refused on every
    /// till after its next sync. Give those members new cards first.
    Retire { id: u32 },
}

#[derive(Subcommand)]
enum ProgramCommand {
    /// Print the program in force.
    Show,
    /// Validate and install a new program version; tills take it on their next sync.
    Set { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a new token and, given the server's address, the join code carrying it (and the key
/// pin unless `no_pin`), optionally as a QR code PNG too.
fn print_token(
    db_url: &str,
    token: String,
    url: Option<String>,
    qr: Option<&std::path::Path>,
    no_pin: bool,
    tls: &TlsArgs,
) -> Result<()> {
    println!("{token}");
    let Some(url) = url else {
        println!(
            "On the till: tillpass sync --server URL --token {token} (or add --url to print a join code)"
        );
        return Ok(());
    };
    let pin = if no_pin || url.starts_with("http://") {
        None
    } else {
        Some(tls.pin(db_url)?)
    };
    let code = tillpass::sync::join::JoinCode { url, token, pin }.encode();
    println!("Join code (on the till: tillpass join CODE, or scan it on an empty till):");
    println!("{code}");
    if let Some(path) = qr {
        tillpass::token::qr::write_png(&code, path)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("QR code written to {}", path.display());
    }
    Ok(())
}

fn now() -> Timestamp {
    Timestamp::from(std::time::SystemTime::now())
}

/// The pass service: `wallet` (wallet.toml) if given, else the demo chain beside a SQLite
/// database (in the working directory on PostgreSQL).
/// APNs is on with real Apple keys only.
async fn pass_service(
    wallet: Option<&std::path::Path>,
    public_url: String,
    db_url: &str,
    db: &Db,
) -> Result<Arc<PassService>> {
    let config = db.config(None, ConfigQuery::default()).await?;
    let program = Program::from_toml(&config.program_toml).context("the stored program")?;
    let demo_dir = db_url
        .strip_prefix("sqlite:")
        .and_then(|path| std::path::Path::new(path).parent())
        .filter(|dir| !dir.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf)
        .join("tillpass-server-wallet-demo");
    let setup =
        WalletSetup::load(wallet, &demo_dir, &program, now()).context("loading the wallet keys")?;
    let config = match wallet {
        Some(path) => WalletConfig::read(path)?,
        None => WalletConfig::default(),
    };
    let apns = config.apple.map(|a| ApnsSettings {
        endpoint: a.apns_url.unwrap_or_else(|| apns::PRODUCTION.to_owned()),
        extra_roots: a.apns_ca,
    });
    let google = match config.google {
        Some(g) => {
            let key = ServiceAccountKey::read(&g.service_account_key)?;
            let endpoints = GoogleEndpoints {
                token_url: g.token_url.unwrap_or_else(|| key.token_uri.clone()),
                api_base: g
                    .api_url
                    .unwrap_or_else(|| google::PRODUCTION_API_BASE.to_owned()),
            };
            Some((key, endpoints))
        }
        None => None,
    };
    if setup.demo {
        tracing::warn!(
            "wallet passes use the demo signing chain (no --wallet): phones will not install them"
        );
    }
    tracing::info!(%public_url, apple = setup.apple.is_some(), google = setup.google.is_some(), apns = apns.is_some(), google_api = google.is_some(), "wallet passes");
    Ok(PassService::new(
        setup,
        PassSettings {
            public_url,
            apns,
            google,
        },
    )?)
}

fn run(cli: Cli) -> Result<()> {
    let file = match &cli.config {
        Some(path) => FileConfig::read(path).map_err(anyhow::Error::msg)?,
        None => FileConfig::default(),
    };
    let log = cli.log.or(match file.log.as_deref() {
        Some("json") => Some(LogFormat::Json),
        Some("text") | None => None,
        Some(other) => bail!("log must be text or json, not {other:?}"),
    });
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if log == Some(LogFormat::Json) {
        builder.json().init();
    } else {
        builder.init();
    }
    let db_url = cli
        .db
        .clone()
        .or(file.db.clone())
        .unwrap_or_else(|| DEFAULT_DB.to_owned());
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let db = Db::open(&db_url, now())
            .await
            .with_context(|| format!("opening {}", pg_tls::without_password(&db_url)))?;
        match cli.command {
            Command::Serve {
                listen,
                tls,
                authority,
                insecure_http,
                wallet,
            } => {
                let listen = listen
                    .or(file.listen)
                    .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("listening on {listen}"))?;
                let addr = listener.local_addr()?;
                let public_url = wallet
                    .public_url
                    .or(file.public_url)
                    .or_else(|| tls.acme.as_ref().map(|d| format!("https://{d}")))
                    .unwrap_or_else(|| format!("https://{addr}"));
                let passes = pass_service(
                    wallet.wallet.or(file.wallet).as_deref(),
                    public_url,
                    &db_url,
                    &db,
                )
                .await?;
                if insecure_http {
                    if !addr.ip().is_loopback() {
                        bail!(
                            "--insecure-http serves only on a loopback address (a reverse proxy on this machine terminates TLS); {addr} is reachable from the network: serve HTTPS instead"
                        );
                    }
                    tracing::info!(%addr, database = db.kind(), "serving plain HTTP on loopback");
                    println!("listening on http://{addr}");
                    serve(listener, db, Some(Arc::clone(&passes))).await?;
                } else if let Some(domain) = tls.acme.clone() {
                    let acme = Arc::new(Acme::open(AcmeSettings {
                        domain: domain.clone(),
                        directory: authority.acme_directory,
                        contacts: authority.acme_contact,
                        ca_root: authority.acme_ca_root,
                        dir: tls.dir(&db_url),
                    })?);
                    let identity = acme.identity()?;
                    // Accepting before there is a certificate: the authority validates through
                    // this listener.
                    let listener = tillpass::server::tls::TlsListener::new(listener, &identity)?;
                    if acme.current().is_none() {
                        tracing::info!(%domain, "obtaining a certificate");
                        acme.renew()
                            .await
                            .with_context(|| format!("obtaining a certificate for {domain}"))?;
                    }
                    tokio::spawn(Arc::clone(&acme).keep_renewed());
                    tracing::info!(%addr, %domain, database = db.kind(), certificate = %identity.cert_path.display(), "serving");
                    println!("listening on https://{addr}");
                    println!("key pin {}", identity.pin);
                    serve(listener, db, Some(Arc::clone(&passes))).await?;
                } else {
                    let identity = tls.identity(&db_url)?;
                    tracing::info!(%addr, database = db.kind(), certificate = %identity.cert_path.display(), "serving");
                    println!("listening on https://{addr}");
                    println!("key pin {}", identity.pin);
                    let listener = tillpass::server::tls::TlsListener::new(listener, &identity)?;
                    serve(listener, db, Some(Arc::clone(&passes))).await?;
                }
            }
            Command::Terminal(TerminalCommand::Add {
                name,
                url,
                qr,
                no_pin,
                tls,
            }) => {
                let token = new_token();
                let id = db.add_terminal(&name, &token_hash(&token), now()).await?;
                println!("terminal {id} ({name}) registered. Its token, shown only this once:");
                print_token(&db_url, token, url, qr.as_deref(), no_pin, &tls)?;
            }
            Command::Terminal(TerminalCommand::Rotate {
                id,
                url,
                qr,
                no_pin,
                tls,
            }) => {
                let token = new_token();
                if !db.rotate_terminal(id, &token_hash(&token)).await? {
                    bail!("no live terminal {id} (see `terminal list`)");
                }
                println!("terminal {id} has a new token; the old one no longer works. Shown only this once:");
                print_token(&db_url, token, url, qr.as_deref(), no_pin, &tls)?;
            }
            Command::Terminal(TerminalCommand::Revoke { id }) => {
                if !db.revoke_terminal(id, now()).await? {
                    bail!("no live terminal {id} (see `terminal list`)");
                }
                println!("terminal {id} revoked");
            }
            Command::Terminal(TerminalCommand::List) => {
                for t in db.terminals().await? {
                    println!(
                        "{:>4}  {:<24} {:<20} registered {}{}",
                        t.id,
                        t.name,
                        t.terminal_id.as_deref().unwrap_or("(not connected yet)"),
                        t.created_at,
                        t.revoked_at
                            .map(|r| format!(", REVOKED {r}"))
                            .unwrap_or_default()
                    );
                }
            }
            Command::Backup { path } => {
                db.backup(&path.to_string_lossy()).await?;
                println!("backed up to {}", path.display());
            }
            Command::Restored => {
                let epoch = db.renew_epoch().await?;
                println!("new epoch {epoch}: tills pull again and push what this copy lacks");
            }
            Command::Key(KeyCommand::Rotate) => {
                let id = db.rotate_key(now()).await?;
                println!(
                    "member-code key {id} added; tills sign new codes with it after their next sync"
                );
            }
            Command::Key(KeyCommand::Retire { id }) => {
                db.retire_key(id, now()).await?;
                println!(
                    "member-code key {id} retired; tills refuse its codes after their next sync"
                );
            }
            Command::Program(ProgramCommand::Show) => {
                let config = db.config(None, ConfigQuery::default()).await?;
                println!("# version {}", config.program_version);
                print!("{}", config.program_toml);
            }
            Command::Program(ProgramCommand::Set { file }) => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                Program::from_toml(&text)
                    .with_context(|| format!("checking {}", file.display()))?;
                let version = db.set_program(&text, now()).await?;
                println!("program version {version} installed; tills take it on their next sync");
            }
            Command::PartnerPoints { file, dry_run } => {
                let bytes = std::fs::read(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let done = tillpass::server::partners::import(&db, &bytes, dry_run, now()).await?;
                let report = done.report;
                for refused in &report.refused {
                    println!("{refused}");
                }
                if !report.refused.is_empty() {
                    anyhow::bail!(
                        "{} lines refused; nothing was recorded",
                        report.refused.len()
                    );
                }
                let verb = if report.written { "Recorded" } else { "Would record" };
                println!(
                    "{verb} {} partner lines, {} points; tills have them after their next sync",
                    report.lines, report.points
                );
                if done.taken_back > 0 {
                    println!(
                        "Reversed {} earlier server lines a till had recorded first",
                        done.taken_back
                    );
                }
            }
            Command::Report { from, to, json } => {
                let (from, to) = tillpass::domain::insights::period(
                    from.as_deref(),
                    to.as_deref(),
                    now(),
                )
                .map_err(|e| anyhow::anyhow!("--{e}"))?;
                let report = db.report(from, to).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    println!("Chain: {} to {} (UTC, the last day not included)", report.from, report.to);
                    for m in &report.measures {
                        let value = m.value.map_or("-".to_owned(), |v| format!("{v:.4}"));
                        println!("  {:<34} {value:>14}  {}", m.name, m.formula);
                    }
                }
            }
            Command::Verify { json } => {
                let verified = db.verify().await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&verified)?);
                } else {
                    print_verified(&verified);
                }
                if !verified.clean() {
                    anyhow::bail!("the server's derived numbers differ from its entries");
                }
            }
            Command::Passes(PassesCommand::Queue) => {
                let (queued, failing) = db.pass_queue_len().await?;
                println!("{queued} pass updates queued, {failing} of them failed at least once");
            }
            Command::Passes(PassesCommand::Revoke { card }) => {
                let card: tillpass::domain::CardNumber = card
                    .replace([' ', '-'], "")
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{card:?} is not a card number: {e}"))?;
                let Some(member) = db.member_by_card(card.as_str().to_owned()).await? else {
                    bail!("no member on this server has card {card}");
                };
                let revoked = db.pass_links_revoke(member, now()).await?;
                println!("{revoked} pass links of card {card} revoked");
            }
            Command::Audit { days, json } => {
                let mut items = db.audit(now().plus_days(-i64::from(days))).await?;
                audit::sort(&mut items);
                if json {
                    println!("{}", serde_json::to_string_pretty(&items)?);
                } else {
                    print!("{}", audit::render(&items));
                }
            }
        }
        Ok(())
    })
}

/// `verify`'s findings as text.
fn print_verified(v: &tillpass::server::verify::Verified) {
    println!("Checked {} members and {} entries", v.members, v.entries);
    if v.balances_checked > 0 {
        println!(
            "  balances: {} checked, {} wrong",
            v.balances_checked, v.balances_wrong
        );
    } else {
        println!("  balances: none stored (each is summed from the entries when asked for)");
    }
    if v.records_made {
        println!(
            "  report records: {} checked, {} wrong, {} changed since the last catch-up (made again by the next report)",
            v.records_checked, v.records_wrong, v.records_pending
        );
        match v.totals_wrong {
            Some(n) => println!("  report totals: {n} day sums differ from the records'"),
            None => println!("  report totals: not checked (a record does not decode)"),
        }
    } else {
        println!(
            "  report records: not made under the program in force (the next report makes them)"
        );
    }
    println!(
        "  sales without a member and recommend answers by day: {} rows differ from what they sum",
        v.extras_wrong
    );
    for problem in &v.problems {
        println!("  - {problem}");
    }
    if v.clean() {
        println!("All agree.");
    }
}
