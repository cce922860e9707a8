//! `tillpass`: the till's command line for headless use and scripts.

mod output;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Parser, Subcommand};

use tillpass::domain::basket::Basket;
use tillpass::domain::money::parse_amount;
use tillpass::domain::quote::Sale;
use tillpass::domain::returns::Returned;
use tillpass::domain::{EntryId, MemberInput, Timestamp};
use tillpass::store::{MemberView, ScanOutcome, Store};

use output::Out;

/// Tillpass: loyalty at the till. With no command, opens the till app; commands are for
/// headless use and scripts. Offline-first points ledger on a local SQLite file.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The till's database file [default: tillpass.sqlite3 in the platform's data directory].
    #[arg(long, global = true, env = "TILLPASS_DB")]
    db: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Who is acting (cashier or job name), recorded on every entry.
    #[arg(long, global = true, env = "TILLPASS_ACTOR", default_value = "till")]
    actor: String,
    /// Where the till app serves the integration API for the point-of-sale system (a loopback
    /// address; `off` for none).
    #[arg(long, global = true, env = "TILLPASS_POS_LISTEN", default_value = tillpass::pos::DEFAULT_LISTEN)]
    pos_listen: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Create the store (or open it) and optionally install a program file.
    Init {
        /// Program TOML to install; the demo program is used for a new store otherwise.
        #[arg(long)]
        program: Option<PathBuf>,
    },
    /// Show the store: file, terminal, program and counts.
    Status,
    /// The bearer token of the integration API the till app serves to the point-of-sale system
    /// (made on first use), and where it listens.
    PosToken,
    /// Enrol, find and show members.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Record a sale and earn points: `earn CARD 12.50`, or a point-of-sale basket:
    /// `earn CARD --basket basket.json` (`{"lines": [{"name": "Latte", "category": "coffee",
    /// "quantity": 2, "amount_minor": 640}]}`; `-` reads standard input).
    Earn {
        /// Card number, phone or email of the member.
        member: String,
        /// Sale amount in the program's currency, e.g. 12.50.
        #[arg(
            allow_hyphen_values = true,
            required_unless_present = "basket",
            conflicts_with = "basket"
        )]
        amount: Option<String>,
        /// A basket's lines as JSON (see docs/integration-api.md).
        #[arg(long)]
        basket: Option<PathBuf>,
        /// Show the points and why, without recording the sale.
        #[arg(long)]
        preview: bool,
    },
    /// Record a sale without a member (no personal data): `sale 4.50`. The report compares
    /// members with these customers.
    Sale {
        /// Sale amount in the program's currency, e.g. 4.50.
        #[arg(allow_hyphen_values = true)]
        amount: String,
    },
    /// Is the program working? Its measures over a period, each with its formula.
    Report {
        /// First day, UTC (YYYY-MM-DD) [default: 90 days before --to].
        #[arg(long)]
        from: Option<String>,
        /// The day after the last, UTC (YYYY-MM-DD) [default: tomorrow].
        #[arg(long)]
        to: Option<String>,
        /// CSV (key, measure, value, unit, formula) instead of text.
        #[arg(long)]
        csv: bool,
        /// Also write the members at risk who agreed to marketing to this CSV file, for a
        /// re-engagement campaign.
        #[arg(long)]
        at_risk_csv: Option<PathBuf>,
    },
    /// Spend points on a reward: `redeem CARD coffee`.
    Redeem {
        /// Card number, phone or email of the member.
        member: String,
        /// Reward id from the program (see `program show`), or with --stamps a stamp card id.
        reward: String,
        /// Spend a full stamp card (its id) on its free item instead of points on a reward.
        #[arg(long)]
        stamps: bool,
    },
    /// The member gives points to one of the program's causes: `donate CARD food-bank 500`.
    Donate {
        /// Card number, phone or email of the member.
        member: String,
        /// Cause id from the program (see `program show`).
        cause: String,
        points: i64,
    },
    /// What members gave each cause.
    Causes,
    /// Points members earned with the program's partners, from the partner's file (CSV with
    /// card, partner, points, reference; or a JSON array): all lines or none, each refused line
    /// named with its reason (manager PIN).
    PartnerPoints {
        file: PathBuf,
        /// Check every line and say what would be recorded; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Sell the program's paid tier to a member (the fee earns no points; buying again extends).
    Membership {
        /// Card number, phone or email of the member.
        member: String,
    },
    /// Gives members who stopped buying the program's re-engagement offer (run it daily);
    /// with --report, how many offers were given and how many brought the member back.
    Reengage {
        #[arg(long)]
        report: bool,
    },
    /// Set the manager PIN (4 to 12 digits) when none is set yet; from TILLPASS_MANAGER_PIN,
    /// or asked for twice.
    #[command(subcommand)]
    ManagerPin(ManagerPinCommand),
    /// Exactly undo one entry by writing its reversal (manager PIN).
    Reverse {
        /// The id of the entry to reverse (see `history`).
        entry: String,
    },
    /// A customer brings back part of a sale made at this till: `return SALE 4.50`, or by line
    /// for a basket: `return SALE --line 2:1` (line 2, one of it). Points (and stamps still
    /// held) come back in proportion.
    Return {
        /// The sale's entry id (see `history`).
        sale: String,
        /// The money given back, for a sale of one amount.
        #[arg(conflicts_with = "line", required_unless_present = "line")]
        amount: Option<String>,
        /// LINE:QUANTITY of a basket sale (lines counted from 1), as often as needed.
        #[arg(long)]
        line: Vec<String>,
    },
    /// A manager's correction: `adjust CARD -50 --note "double scan"` (manager PIN).
    Adjust {
        member: String,
        #[arg(allow_hyphen_values = true)]
        points: i64,
        /// Why (required).
        #[arg(long)]
        note: String,
    },
    /// A member's ledger entries, newest first.
    History {
        member: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Members per tier.
    Tiers {
        /// Re-evaluate every member's tier as of now first (rolling window).
        #[arg(long)]
        refresh: bool,
    },
    /// Recompute every balance and tier from the entries and report any drift.
    Verify {
        /// Rewrite drifted cached states from the entries.
        #[arg(long)]
        repair: bool,
    },
    /// Import members and their balances from another loyalty system (a CSV file: our columns,
    /// or a Square or Loyverse customer export), all or nothing (manager PIN unless --dry-run).
    Import {
        file: PathBuf,
        /// Check every line and say what would be imported; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write a consistent copy of this till's store to PATH while it runs. Put back later, the
    /// copy takes back from the server what it lacks at its next sync.
    Backup { path: PathBuf },
    /// Fill an empty store with realistic demo members and a year of history.
    Demo {
        #[arg(long, default_value_t = 1000)]
        members: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Show or replace the loyalty program.
    #[command(subcommand)]
    Program(ProgramCommand),
    /// Identify a member from scanned or typed text (member code, tag UID, card, phone, name).
    Scan { text: String },
    /// Read QR codes from an image file (PNG or JPEG) and identify the member.
    ScanImage { file: PathBuf },
    /// Watch a camera for a member's QR code (built with `--features camera`).
    #[cfg(feature = "camera")]
    ScanCamera {
        /// Camera number (0 is the first).
        #[arg(long, default_value_t = 0)]
        device: u32,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// NFC tags: link keyboard-reader UIDs, read NDEF tag dumps.
    #[command(subcommand)]
    Nfc(NfcCommand),
    /// Sync with the central server: push this till's entries and members, pull everyone else's.
    Sync {
        /// The server's address (saved for next time), e.g. https://sync.example.com.
        #[arg(long, env = "TILLPASS_SERVER")]
        server: Option<String>,
        /// This till's token from `tillpass-server terminal add` (saved for next time).
        #[arg(long, env = "TILLPASS_TOKEN")]
        token: Option<String>,
        /// The server key's pin (`sha256/...`, printed by `tillpass-server serve`); without it
        /// the server needs a certificate from an authority this machine trusts.
        #[arg(long)]
        pin: Option<String>,
        /// Allow plain HTTP to another machine (every request then travels in clear).
        #[arg(long)]
        insecure_http: bool,
        /// Only show what is waiting and when the last sync was; do not connect.
        #[arg(long)]
        status: bool,
        /// List the pulled records set aside because this till cannot apply them; do not
        /// connect.
        #[arg(long, conflicts_with = "status")]
        quarantine: bool,
    },
    /// Join a server with the join code `tillpass-server terminal add --url` printed: saves its
    /// address, this till's token and the server key's pin, then syncs once.
    Join {
        code: String,
        /// Allow plain HTTP to another machine (every request then travels in clear).
        #[arg(long)]
        insecure_http: bool,
    },
    /// Redemptions made offline at several tills that together overdrew a balance.
    DoubleSpends,
    /// Wallet passes: signed Apple .pkpass files and Google Wallet save links. Without a
    /// wallet.toml beside the store (or --wallet-config), a self-signed demo chain is used.
    #[command(subcommand)]
    Pass(PassCommand),
}

#[derive(Subcommand)]
enum ManagerPinCommand {
    /// Set the first manager PIN.
    Set,
}

#[derive(Subcommand)]
enum PassCommand {
    /// Write the member's signed Apple Wallet pass.
    Apple {
        /// Card number (or phone, email, member code) of the member.
        #[arg(long)]
        card: String,
        #[arg(long)]
        out: PathBuf,
        /// Wallet config [default: wallet.toml beside the store, else demo signing].
        #[arg(long, env = "TILLPASS_WALLET_CONFIG")]
        wallet_config: Option<PathBuf>,
    },
    /// Print the link to the member's pass on the server this till is joined to (the server
    /// holds the wallet keys and keeps the pass up to date); syncs first so the server knows
    /// the member. The customer scans it with the phone's camera.
    Link {
        /// Card number (or phone, email, member code) of the member.
        #[arg(long)]
        card: String,
    },
    /// Print the member's "Save to Google Wallet" link.
    Google {
        /// Card number (or phone, email, member code) of the member.
        #[arg(long)]
        card: String,
        /// Wallet config [default: wallet.toml beside the store, else demo signing].
        #[arg(long, env = "TILLPASS_WALLET_CONFIG")]
        wallet_config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum NfcCommand {
    /// Link a tag UID (as a keyboard-mode reader types it) to a member.
    Link { uid: String, member: String },
    /// Identify the member from a tag dump: NDEF message or Type 2 tag memory, binary or hex.
    Read { file: PathBuf },
    /// Identify members from tags tapped on a PC/SC reader (built with `--features pcsc`).
    #[cfg(feature = "pcsc")]
    Watch {
        /// Stop after the first tag.
        #[arg(long)]
        once: bool,
    },
}

#[derive(Subcommand)]
enum MemberCommand {
    /// Enrol a new member; prints their card number.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        phone: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// YYYY-MM-DD.
        #[arg(long)]
        birthday: Option<String>,
        /// The member agreed to marketing messages.
        #[arg(long)]
        marketing: bool,
        /// The card number (or member code) of the member who referred them: both get the
        /// program's referral bonus with the new member's first qualifying purchase.
        #[arg(long, value_name = "CARD")]
        referred_by: Option<String>,
    },
    /// Search by card number, phone, email or name.
    Find {
        query: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One member: profile, balance, tier and recent activity.
    Show { member: String },
    /// Print the member code (the text in their QR code, wallet pass and NFC tag).
    Code { member: String },
    /// Write the member's QR code as a PNG.
    Qr {
        member: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Give the member a new card number (lost card); the old card's code stops working.
    ReplaceCard { member: String },
    /// Erase the member's personal data at their request (manager PIN): name, phone, email,
    /// birthday, consent, tag links, here and, at their next sync, on every till and the
    /// server. The ledger keeps the member id and points, so totals stay exact.
    Erase { member: String },
    /// The members who agreed to marketing, as CSV (card, name, email, phone): nobody without
    /// that consent, and nobody erased, is ever in it.
    MarketingList {
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Everything this till holds about the member, as JSON (their right of access).
    Export {
        member: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ProgramCommand {
    /// Print the program in force (TOML).
    Show,
    /// Validate and install a new program file (manager PIN).
    Set { file: PathBuf },
}

fn main() -> ExitCode {
    let launched = std::time::Instant::now();
    let cli = Cli::parse();
    match run(cli, launched) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

fn default_db() -> Result<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "tillpass")
        .ok_or_else(|| anyhow!("no home directory to keep the database in; pass --db PATH"))?;
    let dir = dirs.data_dir();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.join("tillpass.sqlite3"))
}

/// `--db`, or the default file in the platform's data directory.
fn db_path(cli: &Cli) -> Result<PathBuf> {
    match &cli.db {
        Some(p) => Ok(p.clone()),
        None => default_db(),
    }
}

fn open(cli: &Cli) -> Result<Store> {
    let path = db_path(cli)?;
    say_if_upgrading(&path);
    Ok(Store::open(&path)?)
}

/// Says why opening the store at `path` will wait, when another process is upgrading it.
fn say_if_upgrading(path: &Path) {
    if Store::upgrade_underway(path) {
        eprintln!(
            "waiting for another tillpass process to finish upgrading {} (a minute on a big store)",
            path.display()
        );
    }
}

/// Finds exactly one member by a member code, tag UID, card number, phone or email.
fn resolve(store: &Store, who: &str) -> Result<MemberView> {
    match store.scan(who, 5)? {
        ScanOutcome::Member(view) => Ok(view),
        ScanOutcome::Matches(_) => match who.parse::<tillpass::domain::CardNumber>() {
            Err(e) if who.chars().all(|c| c.is_ascii_digit() || c == ' ') => Err(e.into()),
            _ => bail!("no member with card number, phone or email {who:?}"),
        },
    }
}

/// Reads tags from the first PC/SC reader: the NDEF member code when the tag carries one, else
/// the UID linked with `nfc link`.
#[cfg(feature = "pcsc")]
fn watch_reader(store: &Store, out: &Out, once: bool) -> Result<()> {
    use tillpass::store::ScanError;
    use tillpass::token::pcsc_reader::{Reader, ReaderError};
    let reader = Reader::first()?;
    eprintln!("Waiting for tags on {} (Ctrl-C to stop)", reader.name());
    loop {
        let tag = match reader.read_tag(std::time::Duration::from_secs(3600)) {
            Ok(tag) => tag,
            Err(ReaderError::Timeout) => continue,
            Err(e) => return Err(e.into()),
        };
        let by_code = match &tag.memory {
            Some(memory) => match store.identify_ndef(memory) {
                Ok(view) => Some(Ok(view)),
                Err(ScanError::NoCodeOnTag | ScanError::Ndef(_)) => None,
                Err(e) => Some(Err(e)),
            },
            None => None,
        };
        let found = match by_code {
            Some(result) => result.map_err(anyhow::Error::from),
            None => store.member_by_tag(&tag.uid)?.ok_or_else(|| {
                anyhow!(
                    "tag {} is not linked to a member (tillpass nfc link)",
                    tag.uid
                )
            }),
        };
        match found {
            Ok(view) => out.member(store.program(), &view, &[])?,
            Err(e) if once => return Err(e),
            Err(e) => eprintln!("error: {e:#}"),
        }
        if once {
            return Ok(());
        }
        reader.wait_removed()?;
    }
}

/// The server's live balance when this till is connected and the server answers; `None`
/// (offline rules) otherwise, with the reason on stderr.
fn live_balance_if_online(store: &mut Store, member: tillpass::domain::MemberId) -> Option<i64> {
    let timeout = tillpass::sync::client::REQUEST_TIMEOUT;
    match tillpass::sync::live_balance(store, member, timeout) {
        Ok(balance) => balance,
        Err(e) => {
            eprintln!("note: offline ({e}); the offline redemption limit applies");
            None
        }
    }
}

/// The member, their pass content and the loaded wallet setup for a `pass` command; says on
/// stderr when passes will be signed by the demo chain.
fn wallet_for(
    cli: &Cli,
    who: &str,
    config: Option<&std::path::Path>,
) -> Result<(
    MemberView,
    tillpass::pass::PassContent,
    tillpass::pass::WalletSetup,
)> {
    let store = open(cli)?;
    let view = resolve(&store, who)?;
    let at = now();
    let content = tillpass::wallet::read_content(&store, view.member.id, at)?;
    let setup = tillpass::wallet::load(config, store.path(), store.program(), at)?;
    if setup.demo {
        eprintln!(
            "note: DEMO signing (no wallet.toml): the pass is real and verifiable but no phone will install it; see README, \"Wallet passes\""
        );
    }
    Ok((view, content, setup))
}

/// A progress bar on standard error for a long command: percent and time left. Drawn only on a
/// terminal, so scripts and JSON output see nothing of it.
fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {percent}% · {human_pos}/{human_len} · {eta} left",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// Where scripts give the manager PIN (commands otherwise ask for it at the terminal).
const PIN_ENV: &str = "TILLPASS_MANAGER_PIN";

/// The manager PIN, from [`PIN_ENV`] or asked for at the terminal without echo.
fn read_pin(prompt: &str) -> Result<String> {
    match std::env::var(PIN_ENV) {
        Ok(pin) => Ok(pin.trim().to_owned()),
        Err(_) if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
            Ok(rpassword::prompt_password(prompt)
                .context("reading the PIN")?
                .trim()
                .to_owned())
        }
        Err(_) => bail!("this needs the manager PIN: set {PIN_ENV}, or run it at a terminal"),
    }
}

/// A manager's command goes on only with the right manager PIN (the attempt limit applies).
fn require_manager(store: &mut Store) -> Result<()> {
    if !store.has_manager_pin()? {
        bail!(
            "this needs the manager PIN, and none is set: set one with `tillpass manager-pin set` or in the app's Manager screen (F10)"
        );
    }
    let pin = read_pin("Manager PIN: ")?;
    store.check_manager_pin(&pin, now())?;
    Ok(())
}

/// Reads a basket's JSON from a file, or standard input for `-`.
fn read_basket(file: &std::path::Path) -> Result<Basket> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .context("reading the basket from standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("{} is not a basket", file.display()))
}

/// Reads a tag dump: raw bytes, or hex text (with any whitespace or colons).
fn read_dump(file: &std::path::Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let text: String = String::from_utf8_lossy(&bytes)
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    if !text.is_empty()
        && text.len().is_multiple_of(2)
        && text.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(Into::into))
            .collect();
    }
    Ok(bytes)
}

/// With no command: the till window.
#[cfg(feature = "app")]
fn till_app(cli: &Cli, actor: String, launched: std::time::Instant) -> Result<()> {
    let path = db_path(cli)?;
    let exports = path
        .parent()
        .map_or_else(|| PathBuf::from("exports"), |dir| dir.join("exports"));
    let pos_listen = match cli.pos_listen.trim() {
        "off" => None,
        addr => Some(addr.parse().with_context(|| {
            format!("--pos-listen {addr:?} is not an address such as 127.0.0.1:7411")
        })?),
    };
    tillpass::ui::run(path, exports, actor, launched, pos_listen)
        .map_err(|e| anyhow!("the till window could not open ({e}); without a display, use the command line: tillpass --help"))
}

/// With no command in a build without the `app` feature: there is no window to open.
#[cfg(not(feature = "app"))]
fn till_app(_cli: &Cli, _actor: String, _launched: std::time::Instant) -> Result<()> {
    bail!(
        "this build of tillpass has no till app (built without the `app` feature); use a command: tillpass --help"
    )
}

fn run(cli: Cli, launched: std::time::Instant) -> Result<()> {
    let out = Out { json: cli.json };
    let actor = cli.actor.clone();
    let Some(command) = &cli.command else {
        return till_app(&cli, actor, launched);
    };
    match command {
        Command::Init { program } => {
            let path = db_path(&cli)?;
            say_if_upgrading(&path);
            let store = match program {
                Some(file) => {
                    let text = std::fs::read_to_string(file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    Store::open_with_program(&path, &text, now())
                        .with_context(|| format!("installing {}", file.display()))?
                }
                None => Store::open(&path)?,
            };
            out.status(&store.stats()?)
        }
        Command::Status => out.status(&open(&cli)?.stats()?),
        Command::PosToken => out.pos_token(&open(&cli)?.pos_token()?, &cli.pos_listen),
        Command::Member(MemberCommand::Add {
            name,
            phone,
            email,
            birthday,
            marketing,
            referred_by,
        }) => {
            let mut store = open(&cli)?;
            let input = MemberInput {
                name: name.clone(),
                phone: phone.clone(),
                email: email.clone(),
                birthday: birthday.clone(),
                marketing_consent: *marketing,
                referred_by: referred_by.clone(),
            };
            let view = store.add_member(input, &actor, now())?;
            out.member(store.program(), &view, &[])
        }
        Command::Member(MemberCommand::Find { query, limit }) => {
            let store = open(&cli)?;
            let hits = store.search(query, *limit)?;
            out.hits(store.program(), &hits)
        }
        Command::Member(MemberCommand::Show { member }) => {
            let store = open(&cli)?;
            let mut view = resolve(&store, member)?;
            view.state = store.summary_at(view.member.id, now())?;
            let history = store.history(view.member.id, 5)?;
            out.member(store.program(), &view, &history)
        }
        Command::Earn {
            member,
            amount,
            basket,
            preview,
        } => {
            let mut store = open(&cli)?;
            let view = resolve(&store, member)?;
            let lines = match basket {
                Some(path) => read_basket(path)?.lines,
                None => Vec::new(),
            };
            let sale = match amount {
                Some(amount) => Sale::Amount(parse_amount(amount, store.program().minor_units)?),
                None => Sale::Lines(&lines),
            };
            if *preview {
                let quote = store.quote(view.member.id, sale, now())?;
                return out.quote(store.program(), &quote);
            }
            let (entry, facts) = store.record_sale(view.member.id, sale, &actor, now())?;
            out.sale_written(&store, &entry, &facts)
        }
        Command::Sale { amount } => {
            let mut store = open(&cli)?;
            let minor = parse_amount(amount, store.program().minor_units)?;
            store.record_guest_sale(minor, &actor, now())?;
            out.guest_sale(store.program(), minor)
        }
        Command::Report {
            from,
            to,
            csv,
            at_risk_csv,
        } => {
            let mut store = open(&cli)?;
            let (from, to) =
                tillpass::domain::insights::period(from.as_deref(), to.as_deref(), now())
                    .map_err(|e| anyhow!("--{e}"))?;
            let bar = progress_bar(0, "reading the ledger");
            let report = store.insights_with_progress(from, to, &mut |read, total| {
                bar.set_length(total);
                bar.set_position(read);
            });
            bar.finish_and_clear();
            let report = report?;
            if let Some(path) = at_risk_csv {
                let contacts = store.at_risk_contacts(&report)?;
                tillpass::pass::write_atomically(path, &contacts_csv(&contacts)?)?;
                eprintln!(
                    "wrote {} of {} members at risk to {} (the others did not agree to marketing)",
                    contacts.len(),
                    report.at_risk.len(),
                    path.display()
                );
            }
            out.report(store.program(), &report, *csv)
        }
        Command::Redeem {
            member,
            reward,
            stamps: true,
        } => {
            let mut store = open(&cli)?;
            let view = resolve(&store, member)?;
            let entry = store.redeem_stamps(view.member.id, reward, &actor, now())?;
            out.entry_written(&store, &entry)
        }
        Command::Redeem { member, reward, .. } => {
            let mut store = open(&cli)?;
            let view = resolve(&store, member)?;
            let live = live_balance_if_online(&mut store, view.member.id);
            let entry = store.redeem_checked(view.member.id, reward, live, &actor, now())?;
            out.entry_written(&store, &entry)
        }
        Command::Sync {
            quarantine: true, ..
        } => out.quarantine(&open(&cli)?.quarantined(1000)?),
        Command::Join {
            code,
            insecure_http,
        } => {
            let code = tillpass::sync::join::JoinCode::parse(code)?;
            let mut store = open(&cli)?;
            let report = tillpass::sync::join(&mut store, &code, *insecure_http, now())
                .with_context(|| format!("joining {}", code.url))?;
            out.sync_report(&report)?;
            out.sync_status(&store.sync_settings()?, &store.sync_counters()?)
        }
        Command::Sync {
            server,
            token,
            pin,
            insecure_http,
            status,
            quarantine: false,
        } => {
            let mut store = open(&cli)?;
            if !*status {
                if let Some(pin) = pin
                    && !tillpass::sync::tls::is_pin(pin)
                {
                    bail!("{pin:?} is not a key pin (sha256/ and 44 base64 characters)");
                }
                match (server, token) {
                    (Some(url), Some(token)) => {
                        store.join_server(url, token, pin.as_deref(), *insecure_http)?;
                    }
                    (None, None) => {}
                    _ => {
                        bail!("give both --server and --token (or neither, to use the saved ones)")
                    }
                }
                let client = tillpass::sync::client_for(&store)?;
                let bar = progress_bar(0, "catching up");
                let report =
                    tillpass::sync::engine::sync_observed(&mut store, &client, now(), &mut |p| {
                        bar.set_length(u64::try_from(p.end - p.start).unwrap_or(0));
                        bar.set_position(u64::try_from(p.at - p.start).unwrap_or(0));
                    })
                    .with_context(|| format!("syncing with {}", client.base()))?;
                bar.finish_and_clear();
                out.sync_report(&report)?;
            }
            out.sync_status(&store.sync_settings()?, &store.sync_counters()?)
        }
        Command::DoubleSpends => {
            let store = open(&cli)?;
            let client = tillpass::sync::client_for(&store)?;
            let list = client.double_spends()?;
            out.double_spends(&list)
        }
        Command::Backup { path } => {
            open(&cli)?.backup(path)?;
            eprintln!("backed up to {}", path.display());
            Ok(())
        }
        Command::Import { file, dry_run } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let parsed = tillpass::domain::import::read(&bytes)
                .with_context(|| format!("importing {}", file.display()))?;
            let mut store = open(&cli)?;
            if !*dry_run && parsed.errors.is_empty() {
                require_manager(&mut store)?;
            }
            let bar = progress_bar(parsed.rows.len() as u64, "importing members");
            let report = store
                .import_members(&parsed, &actor, now(), *dry_run, &mut |done| {
                    bar.set_position(done as u64);
                })
                .with_context(|| format!("importing {}", file.display()))?;
            bar.finish_and_clear();
            out.import(&report, parsed.source.name())
        }
        Command::ManagerPin(ManagerPinCommand::Set) => {
            let mut store = open(&cli)?;
            if store.has_manager_pin()? {
                bail!("a manager PIN is already set");
            }
            let pin = read_pin("New manager PIN (4 to 12 digits): ")?;
            if std::env::var(PIN_ENV).is_err() && read_pin("The same PIN again: ")? != pin {
                bail!("the two PINs differ; nothing was set");
            }
            store.set_manager_pin(&pin)?;
            eprintln!("manager PIN set");
            Ok(())
        }
        Command::Reverse { entry } => {
            let mut store = open(&cli)?;
            let id: EntryId = entry
                .parse()
                .map_err(|_| anyhow!("{entry:?} is not an entry id (see `tillpass history`)"))?;
            require_manager(&mut store)?;
            let written = store.reverse(id, &actor, now())?;
            out.entry_written(&store, &written)
        }
        Command::Donate {
            member,
            cause,
            points,
        } => {
            let mut store = open(&cli)?;
            let view = resolve(&store, member)?;
            let entry = store.donate(view.member.id, cause, *points, &actor, now())?;
            out.entry_written(&store, &entry)
        }
        Command::Reengage { report: false } => {
            let mut store = open(&cli)?;
            let given = store.reengage(now())?;
            out.reengaged(given)
        }
        Command::Reengage { report: true } => {
            let store = open(&cli)?;
            let (given, back) = store.reengagement_results()?;
            out.reengagement(given, back)
        }
        Command::PartnerPoints { file, dry_run } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let mut store = open(&cli)?;
            let lines = tillpass::domain::partners::read(store.program(), &bytes);
            if !*dry_run && lines.iter().all(Result::is_ok) {
                require_manager(&mut store)?;
            }
            let report = store.import_partner_points(&lines, &actor, now(), *dry_run)?;
            out.partner_import(&report)?;
            if report.refused.is_empty() {
                Ok(())
            } else {
                bail!(
                    "{} lines refused; nothing was recorded",
                    report.refused.len()
                )
            }
        }
        Command::Membership { member } => {
            let mut store = open(&cli)?;
            let view = resolve(&store, member)?;
            let entry = store.buy_membership(view.member.id, &actor, now())?;
            out.entry_written(&store, &entry)
        }
        Command::Causes => {
            let store = open(&cli)?;
            out.causes(store.program(), &store.cause_totals()?)
        }
        Command::Return { sale, amount, line } => {
            let mut store = open(&cli)?;
            let id: EntryId = sale
                .parse()
                .map_err(|_| anyhow!("{sale:?} is not an entry id (see `tillpass history`)"))?;
            let picks = line
                .iter()
                .map(|l| {
                    let (n, q) = l.split_once(':').unwrap_or((l, "1"));
                    match (n.trim().parse::<usize>(), q.trim().parse::<i64>()) {
                        (Ok(n), Ok(q)) if n >= 1 => Ok((n - 1, q)),
                        _ => Err(anyhow!("--line {l:?}: write LINE:QUANTITY, e.g. 2:1")),
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            let what = match amount {
                Some(a) => Returned::Amount(parse_amount(a, store.program().minor_units)?),
                None => Returned::Lines(&picks),
            };
            let written = store.refund(id, what, &actor, now())?;
            out.entry_written(&store, &written)
        }
        Command::Adjust {
            member,
            points,
            note,
        } => {
            let mut store = open(&cli)?;
            let view = resolve(&store, member)?;
            require_manager(&mut store)?;
            let entry = store.adjust(view.member.id, *points, note, &actor, now())?;
            out.entry_written(&store, &entry)
        }
        Command::History { member, limit } => {
            let store = open(&cli)?;
            let view = resolve(&store, member)?;
            let entries = store.history(view.member.id, *limit)?;
            out.history(store.program(), &entries)
        }
        Command::Tiers { refresh } => {
            let mut store = open(&cli)?;
            if *refresh {
                store.rebuild_state(Some(now()))?;
            }
            let counts = store.tier_counts()?;
            out.tiers(store.program(), &counts)
        }
        Command::Verify { repair } => {
            let mut store = open(&cli)?;
            let bar = progress_bar(0, "verifying members");
            let report = store.verify_with_progress(*repair, &mut |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })?;
            bar.finish_and_clear();
            out.verify(&report)?;
            if report.is_clean() || *repair {
                Ok(())
            } else {
                bail!("{} problem(s) found", report.drift.len())
            }
        }
        Command::Demo { members, seed } => {
            let mut store = open(&cli)?;
            let bar = progress_bar(*members as u64, "demo members");
            let report = tillpass::demo::seed(&mut store, *members, *seed, now(), |done| {
                bar.set_position(done as u64);
            })?;
            bar.finish_and_clear();
            out.demo(&report)
        }
        Command::Member(MemberCommand::Code { member }) => {
            let store = open(&cli)?;
            let view = resolve(&store, member)?;
            out.code(&view, &store.member_code(&view.member.card))
        }
        Command::Member(MemberCommand::Qr { member, out: file }) => {
            let store = open(&cli)?;
            let view = resolve(&store, member)?;
            let code = store.member_code(&view.member.card);
            tillpass::token::qr::write_png(&code, file)?;
            out.code(&view, &code)
        }
        Command::Member(MemberCommand::Erase { member }) => {
            let mut store = open(&cli)?;
            let view = resolve(&store, member)?;
            require_manager(&mut store)?;
            store.erase_member(view.member.id, now())?;
            let view = store.member(view.member.id)?;
            out.member(store.program(), &view, &[])
        }
        Command::Member(MemberCommand::MarketingList { out: file }) => {
            let contacts = open(&cli)?.marketing_contacts()?;
            let text = String::from_utf8(contacts_csv(&contacts)?)?;
            match file {
                Some(path) => {
                    tillpass::pass::write_atomically(path, text.as_bytes())?;
                    eprintln!("wrote {} members to {}", contacts.len(), path.display());
                }
                None => out.document(text.trim_end())?,
            }
            Ok(())
        }
        Command::Member(MemberCommand::Export { member, out: file }) => {
            let store = open(&cli)?;
            let view = resolve(&store, member)?;
            let export = store.export_member(view.member.id, now())?;
            let text = serde_json::to_string_pretty(&export)?;
            match file {
                Some(path) => {
                    tillpass::pass::write_atomically(path, text.as_bytes())?;
                    eprintln!("wrote {}", path.display());
                }
                None => out.document(&text)?,
            }
            Ok(())
        }
        Command::Member(MemberCommand::ReplaceCard { member }) => {
            let mut store = open(&cli)?;
            let view = resolve(&store, member)?;
            let view = store.replace_card(view.member.id, now())?;
            out.member(store.program(), &view, &[])
        }
        Command::Scan { text } => {
            let store = open(&cli)?;
            match store.scan(text, 20)? {
                ScanOutcome::Member(view) => out.member(store.program(), &view, &[]),
                ScanOutcome::Matches(hits) => out.hits(store.program(), &hits),
            }
        }
        Command::ScanImage { file } => {
            let store = open(&cli)?;
            let texts = tillpass::token::qr::decode_file(file)?;
            match store.identify_first(texts.iter().map(String::as_str)) {
                Some(Ok(view)) => out.member(store.program(), &view, &[]),
                Some(Err(e)) => Err(e.into()),
                None => bail!("no QR code found"),
            }
        }
        #[cfg(feature = "camera")]
        Command::ScanCamera { device, seconds } => {
            let store = open(&cli)?;
            eprintln!("Show the member's QR code to camera {device}…");
            let text = tillpass::token::camera::read_code(
                *device,
                std::time::Duration::from_secs(*seconds),
                |text| text.to_ascii_uppercase().starts_with("TP"),
            )?;
            let view = store.identify_code(&text)?;
            out.member(store.program(), &view, &[])
        }
        Command::Nfc(NfcCommand::Link { uid, member }) => {
            let mut store = open(&cli)?;
            let view = resolve(&store, member)?;
            store.link_tag(uid, view.member.id, now())?;
            out.member(store.program(), &view, &[])
        }
        Command::Nfc(NfcCommand::Read { file }) => {
            let store = open(&cli)?;
            let view = store.identify_ndef(&read_dump(file)?)?;
            out.member(store.program(), &view, &[])
        }
        #[cfg(feature = "pcsc")]
        Command::Nfc(NfcCommand::Watch { once }) => watch_reader(&open(&cli)?, &out, *once),
        Command::Pass(PassCommand::Apple {
            card,
            out: file,
            wallet_config,
        }) => {
            let (view, content, setup) = wallet_for(&cli, card, wallet_config.as_deref())?;
            tillpass::wallet::write_apple_pass(&setup, &content, file)?;
            out.pass_written(&view, file, setup.demo)
        }
        Command::Pass(PassCommand::Link { card }) => {
            let mut store = open(&cli)?;
            let view = resolve(&store, card)?;
            if store.sync_settings()?.server_url.is_none() {
                bail!(
                    "this till is not joined to a server, which issues the pass links; use `pass apple` or `pass google` for a standalone till"
                );
            }
            let client = tillpass::sync::client_for(&store)?;
            tillpass::sync::sync_once(&mut store, &client, now())
                .context("syncing before asking for the link")?;
            let link = client.pass_link(view.member.id)?;
            if link.demo {
                eprintln!(
                    "note: the server signs with its DEMO chain (no --wallet): phones will not install the pass"
                );
            }
            out.save_url(&view, &link.url, link.demo)
        }
        Command::Pass(PassCommand::Google {
            card,
            wallet_config,
        }) => {
            let (view, content, setup) = wallet_for(&cli, card, wallet_config.as_deref())?;
            let url = tillpass::wallet::google_save_url(&setup, &content)?;
            out.save_url(&view, &url, setup.demo)
        }
        Command::Program(ProgramCommand::Show) => {
            let store = open(&cli)?;
            out.program(store.program(), &store.program_toml()?)
        }
        Command::Program(ProgramCommand::Set { file }) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let mut store = open(&cli)?;
            require_manager(&mut store)?;
            store
                .set_program(&text, now())
                .with_context(|| format!("installing {}", file.display()))?;
            out.status(&store.stats()?)
        }
    }
}

/// Members to contact as CSV: card, name, email, phone.
fn contacts_csv(contacts: &[tillpass::store::MarketingContact]) -> Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(["card", "name", "email", "phone"])?;
    for c in contacts {
        writer.write_record([
            c.card.as_str(),
            c.name.as_str(),
            c.email.as_deref().unwrap_or(""),
            c.phone.as_deref().unwrap_or(""),
        ])?;
    }
    Ok(writer.into_inner()?)
}
