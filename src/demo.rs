//! Realistic demo data: members with a year of varied purchase history, made through the same
//! program rules as real sales, for demos and benchmarks.

use std::sync::mpsc;

use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};
use serde::Serialize;

use crate::domain::card::PAYLOAD_LIMIT;
use crate::domain::entry::uuid_v7;
use crate::domain::quote::Sale;
use crate::domain::rules::{self, Draft};
use crate::domain::summary::summarise;
use crate::domain::timestamp::DAY_MS;
use crate::domain::{CardNumber, Entry, EntryId, Member, MemberId, Program, TerminalId, Timestamp};
use crate::store::{HistoricMember, Store, StoreError};

const FIRST_NAMES: &[&str] = &[
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Ivy",
    "Freya",
    "Lily",
    "Florence",
    "Mia",
    "Willow",
    "Rosie",
    "Sophia",
    "Isabella",
    "Grace",
    "Daisy",
    "Sienna",
    "Poppy",
    "Elsie",
    "Emily",
    "Ella",
    "Evelyn",
    "Phoebe",
    "Sofia",
    "Evie",
    "Charlotte",
    "Harper",
    "Matilda",
    "Aisha",
    "Priya",
    "Zara",
    "Noah",
    "Muhammad",
    "George",
    "Oliver",
    "Leo",
    "Arthur",
    "Oscar",
    "Theodore",
    "Freddie",
    "Theo",
    "Archie",
    "Jack",
    "Alfie",
    "Henry",
    "Charlie",
    "Finley",
    "Teddy",
    "Thomas",
    "Arlo",
    "Lucas",
    "Isaac",
    "Tommy",
    "Rory",
    "Jacob",
    "Reuben",
    "Hugo",
    "Ravi",
    "Kwame",
    "Tomasz",
    "Niamh",
    "Siobhan",
    "Dylan",
    "Rhys",
    "Ewan",
    "Callum",
    "Chloe",
    "Megan",
    "Ruby",
    "Hannah",
];

const SURNAMES: &[&str] = &[
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Patel",
    "Robinson",
    "Wright",
    "Thompson",
    "Evans",
    "Walker",
    "White",
    "Roberts",
    "Green",
    "Hall",
    "Thomas",
    "Clarke",
    "Jackson",
    "Wood",
    "Harris",
    "Edwards",
    "Turner",
    "Martin",
    "Cooper",
    "Hill",
    "Ward",
    "Hughes",
    "Moore",
    "Clark",
    "King",
    "Harrison",
    "Lewis",
    "Baker",
    "Lee",
    "Allen",
    "Morris",
    "Khan",
    "Scott",
    "Watson",
    "Davis",
    "Parker",
    "James",
    "Bennett",
    "Young",
    "Phillips",
    "Richardson",
    "Mitchell",
    "Bailey",
    "Carter",
    "Cook",
    "Singh",
    "Shaw",
    "Bell",
    "Collins",
    "Morgan",
    "Kelly",
    "Begum",
    "Miller",
    "Cox",
    "Hussain",
    "Marshall",
    "Simpson",
    "Nowak",
    "O'Brien",
    "Murphy",
    "Okafor",
    "Mensah",
    "Kowalski",
    "Ali",
    "Ahmed",
    "Chen",
    "Nguyen",
];

/// Demo tills that "made" the history (this till's own sequence stays untouched).
const DEMO_TERMINALS: [&str; 3] = ["demo-till-1", "demo-till-2", "demo-till-3"];
/// Card payloads are `index * CARD_STRIDE mod 10^9`: a bijection, so cards are unique but not
/// sequential (3^18 shares no factor with 10^9).
const CARD_STRIDE: u64 = 387_420_489;
/// First demo phone number: +44 7400 000000 upwards are valid UK mobile numbers.
const FIRST_PHONE: u64 = 7_400_000_000;
/// Members generated and committed together.
const CHUNK: usize = 20_000;

/// What `demo` made.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub members: usize,
    pub entries: usize,
    pub seconds: f64,
}

/// Makes members and their histories deterministically from a seed.
pub struct DemoGenerator {
    rng: StdRng,
    program: Program,
    now: Timestamp,
    next_index: u64,
    seqs: [i64; 3],
}

impl DemoGenerator {
    /// A generator for `program` whose histories end at `now`.
    pub fn new(program: Program, seed: u64, now: Timestamp) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            program,
            now,
            next_index: 0,
            seqs: [0; 3],
        }
    }

    /// The next `n` members with their entries.
    pub fn next_chunk(&mut self, n: usize) -> Vec<HistoricMember> {
        (0..n).map(|_| self.next_member()).collect()
    }

    fn next_member(&mut self) -> HistoricMember {
        let index = self.next_index;
        self.next_index += 1;
        let rng = &mut self.rng;
        let first = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
        let last = SURNAMES[rng.random_range(0..SURNAMES.len())];
        let created_at = self
            .now
            .plus_millis(-rng.random_range(DAY_MS..365 * DAY_MS));
        let email_local: String = format!("{first}.{last}{index}")
            .to_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        let member = Member {
            id: MemberId(uuid_v7(created_at, rng.random())),
            card: CardNumber::from_payload(index.wrapping_mul(CARD_STRIDE) % PAYLOAD_LIMIT),
            name: format!("{first} {last}"),
            phone: rng
                .random_bool(0.8)
                .then(|| format!("+44{}", FIRST_PHONE + index)),
            email: rng
                .random_bool(0.5)
                .then(|| format!("{email_local}@example.com")),
            birthday: rng.random_bool(0.6).then(|| {
                let day = rng.random_range(0..365 * 55);
                time::macros::date!(1950 - 01 - 01) + time::Duration::days(day)
            }),
            marketing_consent: rng.random_bool(0.4),
            created_at,
        };
        let entries = self.history(&member);
        HistoricMember { member, entries }
    }

    /// A year's worth of visits: most members come a few times, a few come very often.
    fn history(&mut self, member: &Member) -> Vec<Entry> {
        let mut entries: Vec<Entry> = Vec::new();
        if let Some(draft) = rules::welcome(&self.program) {
            self.push(&mut entries, member.id, draft, member.created_at);
        }
        let visits = match self.rng.random_range(0..100) {
            0..50 => self.rng.random_range(0..3),
            50..85 => self.rng.random_range(3..10),
            85..97 => self.rng.random_range(10..25),
            _ => self.rng.random_range(25..60),
        };
        let start = member.created_at.millis();
        let span = (self.now.millis() - start).max(1);
        let mut times: Vec<i64> = (0..visits)
            .map(|_| start + self.rng.random_range(0..span))
            .collect();
        times.sort_unstable();
        let mut birthday_checked = member.created_at.date();
        for t in times {
            let at = Timestamp::from_millis(t);
            self.maybe_birthday(&mut entries, member, &mut birthday_checked, at);
            let amount = match self.rng.random_range(0..10) {
                0..6 => self.rng.random_range(250..800),
                6..9 => self.rng.random_range(800..2500),
                _ => self.rng.random_range(2500..8000),
            };
            let tier = summarise(&self.program, &entries, at).tier;
            let Ok(draft) = rules::earn(&self.program, tier, Sale::Amount(amount), at) else {
                continue;
            };
            let earned = self.push(&mut entries, member.id, draft, at);
            if self.rng.random_bool(0.02) {
                let original = entries[earned].clone();
                if let Ok(draft) = rules::reverse(&original, false) {
                    self.push(&mut entries, member.id, draft, at.plus_millis(300_000));
                }
            } else if self.rng.random_bool(0.3) {
                self.maybe_redeem(&mut entries, member.id, at.plus_millis(1_000));
            }
        }
        self.maybe_birthday(&mut entries, member, &mut birthday_checked, self.now);
        entries
    }

    fn maybe_redeem(&mut self, entries: &mut Vec<Entry>, member: MemberId, at: Timestamp) {
        // Only what is spendable: points still in their sale's return window are not.
        let now = summarise(&self.program, entries, at);
        let pending = crate::domain::summary::pending(&self.program, entries, at);
        let summary = crate::domain::MemberSummary {
            balance: crate::domain::summary::available(&now, pending),
            ..now
        };
        let used = rules::redeemed_in_last_day(entries, at);
        let affordable: Vec<String> = self
            .program
            .rewards
            .iter()
            .filter(|r| rules::redeem(&self.program, &summary, &r.id, Some(used)).is_ok())
            .map(|r| r.id.clone())
            .collect();
        if affordable.is_empty() {
            return;
        }
        let pick = &affordable[self.rng.random_range(0..affordable.len())];
        if let Ok((_, draft)) = rules::redeem(&self.program, &summary, pick, Some(used)) {
            self.push(entries, member, draft, at);
        }
    }

    /// Adds the birthday bonuses due after `checked` up to `until`, then moves `checked` on.
    fn maybe_birthday(
        &mut self,
        entries: &mut Vec<Entry>,
        member: &Member,
        checked: &mut time::Date,
        until: Timestamp,
    ) {
        let Some(born) = member.birthday else {
            return;
        };
        let end = until.date();
        for year in checked.year()..=end.year() {
            let Some(day) = rules::birthday_in(born, year) else {
                continue;
            };
            if day <= *checked || day > end {
                continue;
            }
            if let Some(draft) = rules::birthday(&self.program, Some(born), day, entries) {
                let midnight = day.midnight().assume_utc().unix_timestamp() * 1000;
                self.push(entries, member.id, draft, Timestamp::from_millis(midnight));
            }
        }
        *checked = (*checked).max(end);
    }

    /// Appends an entry made at a random demo till; returns its index.
    fn push(
        &mut self,
        entries: &mut Vec<Entry>,
        member: MemberId,
        d: Draft,
        at: Timestamp,
    ) -> usize {
        let till = self.rng.random_range(0..DEMO_TERMINALS.len());
        self.seqs[till] += 1;
        entries.push(d.into_entry(
            EntryId(uuid_v7(at, self.rng.random())),
            TerminalId(DEMO_TERMINALS[till].to_owned()),
            self.seqs[till],
            member,
            at,
            "demo",
        ));
        entries.len() - 1
    }
}

/// Fills an empty store with `members` demo members. Generation runs on a second thread while
/// this one writes, in chunks; `progress` hears the running member count after each chunk.
pub fn seed(
    store: &mut Store,
    members: usize,
    seed: u64,
    now: Timestamp,
    mut progress: impl FnMut(usize),
) -> Result<DemoReport, StoreError> {
    if !store.is_empty()? {
        return Err(StoreError::NotEmpty);
    }
    if store.sync_settings()?.server_url.is_some() {
        return Err(StoreError::DemoOnJoinedTill);
    }
    let started = std::time::Instant::now();
    let (tx, rx) = mpsc::sync_channel::<Vec<HistoricMember>>(2);
    let mut generator = DemoGenerator::new(store.program().clone(), seed, now);
    let producer = std::thread::spawn(move || {
        let mut left = members;
        while left > 0 {
            let n = left.min(CHUNK);
            if tx.send(generator.next_chunk(n)).is_err() {
                break;
            }
            left -= n;
        }
    });
    let mut done = 0;
    let mut entries = 0;
    for chunk in rx {
        store.load_history(&chunk, now)?;
        done += chunk.len();
        entries += chunk.iter().map(|h| h.entries.len()).sum::<usize>();
        progress(done);
    }
    producer.join().map_err(|_| StoreError::BadEntry {
        id: EntryId(uuid::Uuid::nil()),
        reason: "the demo generator thread failed".to_owned(),
    })?;
    Ok(DemoReport {
        members: done,
        entries,
        seconds: started.elapsed().as_secs_f64(),
    })
}
