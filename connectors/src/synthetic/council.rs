//! A deterministic, entirely fictional children's services export: the CSV
//! files a council's case management system drops into a folder each
//! night, for demonstrations and tests of the CSV folder connector.
//!
//! Its shape is deliberately unlike the common model: upper-case headers,
//! `DD/MM/YYYY` dates, numeric gender codes, need codes from the children in
//! need census, and a legal surname beside a single forenames column.
//! `connectors/examples/council-csv.toml` maps it.
//!
//! | file | columns |
//! |---|---|
//! | `CHILDREN.csv` | `PERSON_ID`, `LEGAL_SURNAME`, `FORENAMES`, `DOB` (`DD/MM/YYYY`), `GENDER` (`1` male, `2` female, `9` not known), `UPN`, `NHS_NUMBER`, `ADDRESS_1`, `ADDRESS_2`, `TOWN`, `POSTCODE`, `LAST_MODIFIED` (`YYYY-MM-DD HH:MM`) |
//! | `REFERRALS.csv` | `REFERRAL_ID`, `PERSON_ID`, `REFERRAL_DATE` (`DD/MM/YYYY`), `PRIMARY_NEED` (`N1`…`N9`), `OUTCOME` (`NFA`, `S47`, `CIN`, `CP`), `TEAM`, `NOTES` |
//! | `CP_PLANS.csv` | `PLAN_ID`, `PERSON_ID`, `CATEGORY` (`NEG`, `PHY`, `EMO`, `SEX`, `MUL`), `START_DATE`, `END_DATE` (`DD/MM/YYYY`) |
//!
//! # The fixed children
//!
//! - `5001` **Leah Jade Marsh**, born 14/05/2013, NHS `943 476 5919`, UPN
//!   `A12345678901B`, `E8 1DY`; referral `R-1` from the police (abuse or
//!   neglect, section 47 enquiry); child protection plan `P-1` (emotional
//!   abuse) from 05/03/2024.
//! - `5002` **Tyler Marsh**, Leah's brother, born 02/09/2016, `e8 1dy`;
//!   referral `R-2` (family in acute stress, no further action).
//! - `5004` **Jordan Hale**, every value hostile: born `31/02/2010`, UPN
//!   `not-a-upn`, NHS `943 476 5918`; referral `R-3` with unknown need code
//!   `N99` and notes that are not UTF-8; a row of `CHILDREN.csv` with too
//!   few fields; a plan for person `9999`, who is not in the export.
//!
//! Everyone else is generated from the seed with ids from `6001`.

use std::io::Write;
use std::path::Path;

/// Leah Marsh's person id.
pub const LEAH_MARSH: &str = "5001";
/// Tyler Marsh's person id.
pub const TYLER_MARSH: &str = "5002";
/// Jordan Hale's person id; every value about them is malformed.
pub const JORDAN_HALE: &str = "5004";

/// What [`write_council_export`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouncilSummary {
    /// Well-formed rows of `CHILDREN.csv`.
    pub children: usize,
    /// Rows of `REFERRALS.csv`.
    pub referrals: usize,
    /// Rows of `CP_PLANS.csv`.
    pub plans: usize,
}

/// Writes the export into `dir`: the fixed children plus `children`
/// generated from `seed`. Each file is written under a temporary name and
/// renamed into place, as exporters should; with `done_markers`, a
/// `<name>.done` marker is written after each file.
pub fn write_council_export(
    dir: &Path,
    children: usize,
    seed: u64,
    done_markers: bool,
) -> std::io::Result<CouncilSummary> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut people = vec![
        "PERSON_ID,LEGAL_SURNAME,FORENAMES,DOB,GENDER,UPN,NHS_NUMBER,ADDRESS_1,ADDRESS_2,TOWN,POSTCODE,LAST_MODIFIED".to_owned(),
        "5001,Marsh,Leah Jade,14/05/2013,2,A12345678901B,943 476 5919,\"Flat 3, Kingsmead House\",27 Albion Drive,London,E8 1DY,2024-06-12 20:15".to_owned(),
        "5002,Marsh,Tyler,02/09/2016,1,,,\"Flat 3, Kingsmead House\",27 Albion Drive,London,e8 1dy,2024-05-01 09:30".to_owned(),
        "5004,Hale,Jordan,31/02/2010,9,not-a-upn,943 476 5918,9 Cedar Close,,London,not a postcode,yesterday".to_owned(),
        // Too few fields: skipped and reported by line.
        "5005,Short,Row".to_owned(),
    ];
    let mut referrals = vec![
        "REFERRAL_ID,PERSON_ID,REFERRAL_DATE,PRIMARY_NEED,OUTCOME,TEAM,NOTES".to_owned(),
        "R-1,5001,02/03/2024,N1,S47,Eastborough MASH,\"Police referral after domestic abuse incident; child present.\"".to_owned(),
        "R-2,5002,02/03/2024,N4,NFA,Eastborough MASH,Sibling of child subject to enquiry.".to_owned(),
    ];
    let mut plans = vec![
        "PLAN_ID,PERSON_ID,CATEGORY,START_DATE,END_DATE".to_owned(),
        "P-1,5001,EMO,05/03/2024,".to_owned(),
        "P-9,9999,NEG,01/01/2024,".to_owned(),
    ];
    const SURNAMES: &[&str] = &[
        "Adeyemi", "Brown", "Clarke", "Dhillon", "Evans", "Fox", "Gordon", "Hughes", "Islam",
        "Jackson", "Khan", "Lewis", "Morgan", "Nguyen", "O'Brien", "Price",
    ];
    const FORENAMES: &[&str] = &[
        "Aaliyah", "Bobby", "Callum", "Daisy", "Eli", "Freya", "Grace", "Harvey", "Isla", "Jayden",
        "Kai", "Layla", "Mason", "Nora", "Ollie", "Poppy",
    ];
    const OUTWARD: &[&str] = &["E8", "E9", "N16", "BR1", "SE15"];
    const NEEDS: &[&str] = &["N1", "N2", "N3", "N4", "N5", "N6", "N7", "N8", "N9"];
    const OUTCOMES: &[&str] = &["NFA", "S47", "CIN", "CP"];
    let pick = |rng: &mut fastrand::Rng, items: &[&'static str]| -> &'static str {
        items
            .get(rng.usize(..items.len()))
            .copied()
            .unwrap_or_default()
    };
    for i in 0..children {
        let id = 6001 + i;
        let postcode = format!(
            "{} {}{}{}",
            pick(&mut rng, OUTWARD),
            rng.u8(1..10),
            char::from(rng.u8(b'A'..=b'Z')),
            char::from(rng.u8(b'A'..=b'Z'))
        );
        // Exports spell postcodes however they were typed.
        let postcode = if rng.bool() {
            postcode.to_lowercase().replace(' ', "")
        } else {
            postcode
        };
        let upn = format!(
            "{}{:011}{}",
            char::from(rng.u8(b'A'..=b'Z')),
            rng.u64(0..100_000_000_000),
            rng.u8(0..10)
        );
        people.push(format!(
            "{id},{},{},{:02}/{:02}/{},{},{upn},{},{} Mill Road,,London,{postcode},2024-01-0{} 08:00",
            pick(&mut rng, SURNAMES),
            pick(&mut rng, FORENAMES),
            rng.u8(1..=28),
            rng.u8(1..=12),
            rng.i32(2006..2024),
            pick(&mut rng, &["1", "2", "9"]),
            super::test_nhs_number(&mut rng),
            rng.u16(1..200),
            rng.u8(1..10),
        ));
        if rng.u8(0..100) < 40 {
            referrals.push(format!(
                "R-{},{id},{:02}/{:02}/2024,{},{},Eastborough Children's Services,Generated referral.",
                100 + i,
                rng.u8(1..=28),
                rng.u8(1..=12),
                pick(&mut rng, NEEDS),
                pick(&mut rng, OUTCOMES),
            ));
        }
        if rng.u8(0..100) < 10 {
            plans.push(format!("P-{},{id},NEG,01/02/2024,", 100 + i));
        }
    }
    let summary = CouncilSummary {
        children: people.len() - 2,
        // Less the header, plus Jordan Hale's, written below.
        referrals: referrals.len(),
        plans: plans.len() - 1,
    };
    let mut referral_bytes = lines(&referrals);
    // Jordan Hale's referral: an unknown need code and notes that are not
    // UTF-8, written as raw bytes.
    referral_bytes
        .extend_from_slice(b"R-3,5004,01/01/2024,N99,CIN,Eastborough MASH,Notes \xff\xfe\n");
    std::fs::create_dir_all(dir)?;
    write_file(dir, "CHILDREN.csv", &lines(&people), done_markers)?;
    write_file(dir, "REFERRALS.csv", &referral_bytes, done_markers)?;
    write_file(dir, "CP_PLANS.csv", &lines(&plans), done_markers)?;
    Ok(summary)
}

fn lines(rows: &[String]) -> Vec<u8> {
    let mut out = rows.join("\n").into_bytes();
    out.push(b'\n');
    out
}

/// Writes under a temporary name and renames into place, so a reader that
/// only opens the final name never sees half a file.
fn write_file(dir: &Path, name: &str, bytes: &[u8], done_marker: bool) -> std::io::Result<()> {
    let temporary = dir.join(format!(".{name}.partial"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, dir.join(name))?;
    if done_marker {
        std::fs::write(dir.join(format!("{name}.done")), b"")?;
    }
    Ok(())
}
