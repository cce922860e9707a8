//! Signed .pkpass files per second on one thread: the whole pass (pass.json, images, two
//! localisations, manifest, CMS signature, zip) built in memory, as a server answering Wallet's
//! "get latest pass" would. Also writes the pass model and certificates to
//! `target/bench/passes/` so `benches/passes.sh` can have passkit-generator make the same
//! storeCard with the same chain in the same run.
//!
//! Run: `bash benches/passes.sh` (both), or `cargo bench --bench passes` (this side only).

use std::path::Path;
use std::time::Instant;

use tillpass::domain::{CardNumber, Member, MemberId, MemberSummary, Program, Timestamp};
use tillpass::pass::apple::{AppleSettings, PassMaker};
use tillpass::pass::demo::{ChainSpec, issue_chain};
use tillpass::pass::{KeySource, PassMember, PassSigner};

const PASSES: usize = 3_000;
const MEMBERS: u64 = 100;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let now = Timestamp::from(std::time::SystemTime::now());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/passes");
    std::fs::create_dir_all(dir.join("model"))?;
    let spec = ChainSpec::demo(now);
    let chain = issue_chain(&spec)?;
    for (name, text) in [
        ("root.pem", &chain.root_pem),
        ("wwdr.pem", &chain.wwdr_pem),
        ("pass.pem", &chain.pass_pem),
        ("pass.key", &chain.pass_key_pem),
    ] {
        std::fs::write(dir.join(name), text)?;
    }
    let signer = PassSigner::load(
        &KeySource::Pem {
            certificate: dir.join("pass.pem"),
            key: dir.join("pass.key"),
        },
        &dir.join("wwdr.pem"),
        &spec.pass_type_identifier,
        &spec.team_identifier,
        now,
    )?;
    let settings = AppleSettings {
        pass_type_identifier: spec.pass_type_identifier.clone(),
        team_identifier: spec.team_identifier.clone(),
        web_service_url: Some("https://wallet.example.com/passkit".into()),
        nfc_encryption_public_key: None,
        images: None,
        demo: false,
    };
    let maker = PassMaker::new(settings, signer)?;
    let program = Program::demo();
    let members: Vec<(Member, MemberSummary)> = (0..MEMBERS)
        .map(|i| {
            let member = Member {
                id: MemberId(uuid::Uuid::from_u128(
                    0x0190_0000_0000_7000_8000_0000_0000_0000 + u128::from(i),
                )),
                card: CardNumber::from_payload(100_000_000 + i),
                name: format!("Member {i}"),
                phone: None,
                email: None,
                birthday: None,
                marketing_consent: false,
                created_at: now,
            };
            let points = i64::try_from(i * 137 % 6_000).unwrap_or(0);
            let summary = MemberSummary {
                balance: points,
                qualifying: points,
                tier: program.tier_for(points),
                as_of: now,
                last_activity_at: Some(now),
                entry_count: 3,
            };
            (member, summary)
        })
        .collect();
    let no_stamps = std::collections::BTreeMap::new();
    let pass = |i: usize| {
        let (member, summary) = &members[i % members.len()];
        PassMember {
            program: &program,
            member,
            summary,
            code: "TP1.1000000009.ABCDEFGHIJKLMNOP",
            auth_token: "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
            voided: false,
            now,
            stamps: &no_stamps,
            offers: &[],
            badges: &[],
        }
    };

    // The model passkit-generator starts from: the same files this maker puts in a pass.
    for (name, bytes) in maker.files(&pass(0))? {
        let path = dir.join("model").join(&name);
        std::fs::create_dir_all(path.parent().ok_or("model path")?)?;
        std::fs::write(path, bytes)?;
    }

    for i in 0..100 {
        std::hint::black_box(maker.build(&pass(i))?);
    }
    let mut times = Vec::with_capacity(PASSES);
    let mut bytes = 0;
    let start = Instant::now();
    for i in 0..PASSES {
        let t = Instant::now();
        bytes += std::hint::black_box(maker.build(&pass(i))?).len();
        times.push(t.elapsed());
    }
    let elapsed = start.elapsed();
    times.sort();
    let rate = PASSES as f64 / elapsed.as_secs_f64();
    println!(
        "tillpass: {PASSES} signed passes in {:.2} s on one thread: {rate:.0} passes/s (p50 {:.2} ms, p99 {:.2} ms, {} bytes each)",
        elapsed.as_secs_f64(),
        times[PASSES / 2].as_secs_f64() * 1e3,
        times[PASSES * 99 / 100].as_secs_f64() * 1e3,
        bytes / PASSES
    );
    println!("model and chain written to {}", dir.display());
    Ok(())
}
