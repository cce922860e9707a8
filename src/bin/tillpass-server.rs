//! `tillpass-server`: the central server tills sync with, and its admin commands.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use tillpass::domain::{Program, Timestamp};
use tillpass::server::audit;
use tillpass::server::config::{DEFAULT_DB, DEFAULT_LISTEN, FileConfig};
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
    /// Serve tills over HTTP; prints "listening on http://ADDR" once ready.
    Serve {
        /// Address to listen on; port 0 picks a free port [default: 127.0.0.1:8443].
        #[arg(long, env = "TILLPASS_SERVER_LISTEN")]
        listen: Option<String>,
    },
    /// Register, revoke and list tills.
    #[command(subcommand)]
    Terminal(TerminalCommand),
    /// Show or replace the program every till runs.
    #[command(subcommand)]
    Program(ProgramCommand),
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
}

#[derive(Subcommand)]
enum TerminalCommand {
    /// Register a till; prints its token once (only a hash is stored).
    Add { name: String },
    /// Refuse a till's token from now on.
    Revoke { id: i64 },
    /// Every registered till.
    List,
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

fn now() -> Timestamp {
    Timestamp::from(std::time::SystemTime::now())
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
            .with_context(|| format!("opening {db_url}"))?;
        match cli.command {
            Command::Serve { listen } => {
                let listen = listen
                    .or(file.listen)
                    .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("listening on {listen}"))?;
                let addr = listener.local_addr()?;
                tracing::info!(%addr, database = db.kind(), "serving");
                println!("listening on http://{addr}");
                serve(listener, db).await?;
            }
            Command::Terminal(TerminalCommand::Add { name }) => {
                let token = new_token();
                let id = db.add_terminal(&name, &token_hash(&token), now()).await?;
                println!("terminal {id} ({name}) registered. Its token, shown only this once:");
                println!("{token}");
                println!("On the till: tillpass sync --server URL --token {token}");
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
