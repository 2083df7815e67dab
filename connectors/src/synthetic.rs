//! A deterministic, entirely fictional police records-management system.
//!
//! Demonstrations and tests need a legacy schema that looks like the real
//! thing (cryptic table names, dates as text in three formats, codes instead
//! of words, postcodes typed any old way) without any real person in it.
//! [`generate_police_rms`] writes one into SQLite or PostgreSQL from a seed,
//! and `connectors/examples/police-rms.toml` maps it onto the common model.
//!
//! # The schema
//!
//! | table | columns |
//! |---|---|
//! | `NOMINAL` | `NOM_ID` integer, `SURNAME`, `FORENAME_1`, `FORENAME_2`, `DOB` (`DD/MM/YYYY`), `SEX` (`M`/`F`/`U`), `PNC_REF`, `NHS_NO` (often with spaces), `LAST_UPD` (`YYYYMMDDHHMMSS`) |
//! | `NOMINAL_ADDR` | `ADDR_ID`, `NOM_ID`, `ADDR_1`, `ADDR_2`, `TOWN`, `PCODE` (any case and spacing), `FROM_DT` (integer `YYYYMMDD`) |
//! | `OCCURRENCE` | `OCC_NO` (`CAD/2024/001234`), `OCC_TYPE` (`DA`, `MISPER`, `ASLT`, `CSE`, `BURG`, `ASB`), `OCC_DTTM` (RFC 3339), `LOCN`, `MO_TEXT` |
//! | `OCC_NOM_LINK` | `OCC_NO`, `NOM_ID`, `INVOLVEMENT` (`V`, `S`, `W`, `RP`, `INV`), `PROT_MKR` (protective marking: `WP` witness protection, otherwise NULL) |
//! | `WARN_FLAG` | `FLAG_ID`, `NOM_ID`, `FLAG_CD` (`WE`, `VI`, `SH`, `DR`), `FLAG_TXT`, `START_DT`, `END_DT` (`DD-MON-YYYY`) |
//! | `DASH_RISK` | `RISK_ID`, `NOM_ID`, `RISK_LVL` (`H`/`M`/`S`), `ASSESS_DT` (`DD/MM/YYYY HH:MM`), `NOTES` |
//! | `CHILD_CONCERN` | `CONCERN_ID`, `NOM_ID`, `CONCERN_CD` (`NEG`, `PHY`, `EMO`, `SEX`, `EXP`), `DETAIL`, `RAISED` (`YYYY-MM-DD`), `STATUS_CD` (`O`/`R`/`C`), `OIC_TEAM` |
//! | `ASSOC` | `NOM_ID`, `ASSOC_NOM_ID`, `REL_CD` (`PAR`, `CHI`, `SIB`, `PTR`, `EXP`, `ASC`), one row per direction |
//! | `CHANGE_LOG` | `CHANGE_SEQ` integer, only ever growing, `NOM_ID`, `CHANGED_AT` (`YYYYMMDDHHMMSS`); one row per change to a person |
//!
//! # The fixed people
//!
//! Always present, whatever the seed, so demonstrations and tests can find
//! them (source ids in brackets):
//!
//! - **Leah Jade Marsh** (`100001`), a child: born 14/05/2013, female, NHS
//!   number `943 476 5919`, living at Flat 3, Kingsmead House, 27 Albion
//!   Drive, London `e81dy` since 1 September 2021 (before that 12 Mill Lane,
//!   Bromley, `BR1 3PQ`). A witness to domestic abuse incident
//!   `CAD/2024/001234`; the missing person in `CAD/2024/002345`; subject of
//!   child concern `CHILD_CONCERN/1` (emotional abuse, referred); Kerry
//!   Marsh's child.
//! - **Kerry Anne Marsh** (`100002`), Leah's mother: born 02/11/1989, NHS
//!   number `999 000 0018`, same address as Leah (`E8 1DY`). The victim in
//!   `CAD/2024/001234` and reporting person in `CAD/2024/002345`; DASH risk
//!   `H` (`DASH_RISK/1`); self-harm warning marker `WARN_FLAG/1`;
//!   ex-partner of Wayne Doyle.
//! - **Wayne Lee Doyle** (`100003`): born 21/07/1986, PNC id `08/123456K`,
//!   NHS number `9990000026`, 44 Station Road, London `N16 7AB`. The suspect
//!   in `CAD/2024/001234`; warning markers violent (`WARN_FLAG/2`) and
//!   weapons (`WARN_FLAG/3`, lapsed 15/01/2025).
//! - **Jordan Hale** (`100004`), whose every row is hostile: date of birth
//!   `31/02/2010`, NHS number `943 476 5918` (bad check digit), postcode
//!   `not a postcode`, occurrence `CAD/2024/009999` of unknown type `ZZZ`
//!   with a 100 KiB `MO_TEXT`, DASH risk `X` (`DASH_RISK/2`) beside a valid
//!   `M` (`DASH_RISK/3`).
//! - **Robert'); DROP TABLE NOMINAL;-- Tables** (`100005`): born 01/04/2008,
//!   NHS number `999 000 0034`, whose given name is SQL that must come back
//!   as data.
//!
//! Everyone else is generated from the seed, with NOM_IDs from `200001`,
//! NHS numbers in the `999` test range, and surnames that never collide
//! with the fixed people's. Generated witnesses with an odd `NOM_ID` are
//! under witness protection (`PROT_MKR = 'WP'` on their occurrence link),
//! which the mapping turns into the `witness-protection` sensitivity marker.

pub mod council;
#[cfg(any(test, feature = "test-util"))]
pub mod health;

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, PgConnection, SqliteConnection};

use crate::ConnectorError;

/// Leah Marsh's source id.
pub const LEAH_MARSH: &str = "100001";
/// Kerry Marsh's source id.
pub const KERRY_MARSH: &str = "100002";
/// Wayne Doyle's source id.
pub const WAYNE_DOYLE: &str = "100003";
/// Jordan Hale's source id; every row about them is malformed.
pub const JORDAN_HALE: &str = "100004";
/// The source id of the person whose given name is SQL.
pub const ROBERT_TABLES: &str = "100005";

/// The first generated person's `NOM_ID`.
const FIRST_GENERATED: i64 = 200_001;

/// What [`generate_police_rms`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticSummary {
    /// `NOMINAL` rows, the fixed people included.
    pub people: usize,
    /// `NOMINAL_ADDR` rows.
    pub addresses: usize,
    /// `OCCURRENCE` rows.
    pub occurrences: usize,
    /// `OCC_NOM_LINK` rows.
    pub occurrence_links: usize,
    /// `WARN_FLAG` rows.
    pub warning_flags: usize,
    /// `DASH_RISK` rows.
    pub risk_assessments: usize,
    /// `CHILD_CONCERN` rows.
    pub child_concerns: usize,
    /// `ASSOC` rows (one per direction).
    pub associations: usize,
    /// `CHANGE_LOG` rows, one per person.
    pub changes: usize,
    /// The fixed people's source ids.
    pub fixed: FixedPeople,
}

/// The source ids of the fixed people described in the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedPeople {
    /// Leah Marsh, the child.
    pub leah_marsh: String,
    /// Kerry Marsh, her mother.
    pub kerry_marsh: String,
    /// Wayne Doyle, Kerry's ex-partner.
    pub wayne_doyle: String,
    /// Jordan Hale, all of whose rows are malformed.
    pub jordan_hale: String,
    /// Robert'); DROP TABLE NOMINAL;-- Tables.
    pub robert_tables: String,
}

/// Writes the synthetic police system to the database at `url`
/// (`sqlite://…`, created if missing, or `postgres://…`), replacing any
/// earlier copy: the fixed people plus `people` generated from `seed`. The
/// same seed always writes the same rows.
pub async fn generate_police_rms(
    url: &str,
    people: usize,
    seed: u64,
) -> Result<SyntheticSummary, ConnectorError> {
    let rows = Generator::new(seed).generate(people);
    let fail = |source| ConnectorError::Synthetic { source };
    // The two drivers' connection types share no trait that makes a generic
    // function readable, so one macro writes through either.
    macro_rules! write_rows {
        ($conn:expr) => {{
            let mut conn = $conn;
            for ddl in SCHEMA {
                sqlx::query(*ddl).execute(&mut conn).await.map_err(fail)?;
            }
            let mut tx = conn.begin().await.map_err(fail)?;
            for insert in &rows.inserts {
                let mut q = sqlx::query(insert.sql);
                for value in &insert.values {
                    q = match value {
                        Value::Int(i) => q.bind(*i),
                        Value::Text(t) => q.bind(t.clone()),
                        Value::Null => q.bind(None::<String>),
                    };
                }
                q.execute(&mut *tx).await.map_err(fail)?;
            }
            tx.commit().await.map_err(fail)?;
            for ddl in SEARCH_INDEXES {
                sqlx::query(*ddl).execute(&mut conn).await.map_err(fail)?;
            }
            conn.close().await.map_err(fail)?;
        }};
    }
    if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(fail)?
            .create_if_missing(true);
        write_rows!(
            SqliteConnection::connect_with(&options)
                .await
                .map_err(fail)?
        );
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = PgConnectOptions::from_str(url).map_err(fail)?;
        write_rows!(PgConnection::connect_with(&options).await.map_err(fail)?);
    } else {
        let scheme = url.split(':').next().unwrap_or_default();
        return Err(ConnectorError::Synthetic {
            source: sqlx::Error::Configuration(
                format!("scheme `{scheme}` is not supported; use `sqlite:` or `postgres:`").into(),
            ),
        });
    }
    Ok(rows.summary())
}

const SCHEMA: &[&str] = &[
    "DROP TABLE IF EXISTS NOMINAL",
    "DROP TABLE IF EXISTS NOMINAL_ADDR",
    "DROP TABLE IF EXISTS OCCURRENCE",
    "DROP TABLE IF EXISTS OCC_NOM_LINK",
    "DROP TABLE IF EXISTS WARN_FLAG",
    "DROP TABLE IF EXISTS DASH_RISK",
    "DROP TABLE IF EXISTS CHILD_CONCERN",
    "DROP TABLE IF EXISTS ASSOC",
    "DROP TABLE IF EXISTS CHANGE_LOG",
    "CREATE TABLE NOMINAL (NOM_ID INTEGER PRIMARY KEY, SURNAME TEXT, FORENAME_1 TEXT, \
     FORENAME_2 TEXT, DOB TEXT, SEX TEXT, PNC_REF TEXT, NHS_NO TEXT, LAST_UPD TEXT)",
    "CREATE TABLE NOMINAL_ADDR (ADDR_ID INTEGER PRIMARY KEY, NOM_ID INTEGER, ADDR_1 TEXT, \
     ADDR_2 TEXT, TOWN TEXT, PCODE TEXT, FROM_DT INTEGER)",
    "CREATE TABLE OCCURRENCE (OCC_NO TEXT PRIMARY KEY, OCC_TYPE TEXT, OCC_DTTM TEXT, \
     LOCN TEXT, MO_TEXT TEXT)",
    "CREATE TABLE OCC_NOM_LINK (OCC_NO TEXT, NOM_ID INTEGER, INVOLVEMENT TEXT, PROT_MKR TEXT)",
    "CREATE TABLE WARN_FLAG (FLAG_ID INTEGER PRIMARY KEY, NOM_ID INTEGER, FLAG_CD TEXT, \
     FLAG_TXT TEXT, START_DT TEXT, END_DT TEXT)",
    "CREATE TABLE DASH_RISK (RISK_ID INTEGER PRIMARY KEY, NOM_ID INTEGER, RISK_LVL TEXT, \
     ASSESS_DT TEXT, NOTES TEXT)",
    "CREATE TABLE CHILD_CONCERN (CONCERN_ID INTEGER PRIMARY KEY, NOM_ID INTEGER, \
     CONCERN_CD TEXT, DETAIL TEXT, RAISED TEXT, STATUS_CD TEXT, OIC_TEAM TEXT)",
    "CREATE TABLE ASSOC (NOM_ID INTEGER, ASSOC_NOM_ID INTEGER, REL_CD TEXT)",
    "CREATE TABLE CHANGE_LOG (CHANGE_SEQ INTEGER PRIMARY KEY, NOM_ID INTEGER, CHANGED_AT TEXT)",
    "CREATE INDEX NOMINAL_ADDR_NOM ON NOMINAL_ADDR (NOM_ID)",
    "CREATE INDEX OCC_NOM_LINK_NOM ON OCC_NOM_LINK (NOM_ID)",
    "CREATE INDEX WARN_FLAG_NOM ON WARN_FLAG (NOM_ID)",
    "CREATE INDEX DASH_RISK_NOM ON DASH_RISK (NOM_ID)",
    "CREATE INDEX CHILD_CONCERN_NOM ON CHILD_CONCERN (NOM_ID)",
    "CREATE INDEX ASSOC_NOM ON ASSOC (NOM_ID)",
];

/// The indexes a records system keeps for finding people, on the very
/// expressions the example mapping's search compares (so `UPPER(SURNAME)`, not
/// `SURNAME`): without them every search reads every nominal. Built once the
/// rows are in, which is quicker than keeping them up to date row by row.
const SEARCH_INDEXES: &[&str] = &[
    "CREATE INDEX NOMINAL_SURNAME ON NOMINAL (UPPER(SURNAME))",
    "CREATE INDEX NOMINAL_DOB ON NOMINAL (DOB)",
    "CREATE INDEX NOMINAL_NHS_NO ON NOMINAL (REPLACE(NHS_NO, ' ', ''))",
    "CREATE INDEX NOMINAL_PNC_REF ON NOMINAL (UPPER(REPLACE(PNC_REF, ' ', '')))",
    "CREATE INDEX NOMINAL_ID_TEXT ON NOMINAL ((CAST(NOM_ID AS TEXT)))",
    "CREATE INDEX NOMINAL_ADDR_PCODE ON NOMINAL_ADDR (REPLACE(UPPER(PCODE), ' ', ''))",
];

const INSERT_NOMINAL: &str = "INSERT INTO NOMINAL (NOM_ID, SURNAME, FORENAME_1, FORENAME_2, DOB, \
     SEX, PNC_REF, NHS_NO, LAST_UPD) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const INSERT_ADDR: &str = "INSERT INTO NOMINAL_ADDR (ADDR_ID, NOM_ID, ADDR_1, ADDR_2, TOWN, PCODE, \
     FROM_DT) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const INSERT_OCCURRENCE: &str = "INSERT INTO OCCURRENCE (OCC_NO, OCC_TYPE, OCC_DTTM, LOCN, MO_TEXT) \
     VALUES ($1, $2, $3, $4, $5)";
const INSERT_LINK: &str =
    "INSERT INTO OCC_NOM_LINK (OCC_NO, NOM_ID, INVOLVEMENT, PROT_MKR) VALUES ($1, $2, $3, $4)";
const INSERT_WARN: &str = "INSERT INTO WARN_FLAG (FLAG_ID, NOM_ID, FLAG_CD, FLAG_TXT, START_DT, \
     END_DT) VALUES ($1, $2, $3, $4, $5, $6)";
const INSERT_DASH: &str = "INSERT INTO DASH_RISK (RISK_ID, NOM_ID, RISK_LVL, ASSESS_DT, NOTES) \
     VALUES ($1, $2, $3, $4, $5)";
const INSERT_CONCERN: &str = "INSERT INTO CHILD_CONCERN (CONCERN_ID, NOM_ID, CONCERN_CD, DETAIL, \
     RAISED, STATUS_CD, OIC_TEAM) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const INSERT_ASSOC: &str = "INSERT INTO ASSOC (NOM_ID, ASSOC_NOM_ID, REL_CD) VALUES ($1, $2, $3)";
const INSERT_CHANGE: &str =
    "INSERT INTO CHANGE_LOG (CHANGE_SEQ, NOM_ID, CHANGED_AT) VALUES ($1, $2, $3)";

const GIVEN_FEMALE: &[&str] = &[
    "Amelia", "Olivia", "Isla", "Ava", "Mia", "Ivy", "Lily", "Freya", "Grace", "Sophie", "Chloe",
    "Ella", "Evie", "Ruby", "Poppy", "Zara", "Aisha", "Maya", "Nadia", "Erin",
];
const GIVEN_MALE: &[&str] = &[
    "Oliver", "George", "Noah", "Arthur", "Leo", "Harry", "Oscar", "Jack", "Charlie", "Theo",
    "Finley", "Adam", "Yusuf", "Kai", "Ethan", "Callum", "Reece", "Liam", "Owen", "Samuel",
];
// INVARIANT: none of the fixed people's surnames, so searches for them find
// exactly them.
const SURNAMES: &[&str] = &[
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel",
    "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall",
    "Khan", "Clarke", "Lewis", "Harris", "Ahmed", "Begum", "Okafor", "Nowak", "Murphy", "Kelly",
    "Price", "Ward",
];
const STREETS: &[&str] = &[
    "Albert Road",
    "Victoria Street",
    "Church Lane",
    "Station Road",
    "Park Avenue",
    "Mill Lane",
    "High Street",
    "Queens Road",
    "Kings Road",
    "Green Lane",
    "Manor Way",
    "Elm Grove",
    "Cedar Close",
    "Orchard Rise",
];
// INVARIANT: `E8` is not among them, so only the Marshes live in `E8 1DY`.
const AREAS: &[(&str, &str)] = &[
    ("London", "N16"),
    ("London", "E5"),
    ("London", "E9"),
    ("London", "SE15"),
    ("London", "NW6"),
    ("Croydon", "CR0"),
    ("Bromley", "BR1"),
    ("London", "SW9"),
    ("London", "W12"),
    ("London", "N1"),
];
const INWARD_LETTERS: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";
const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const OCC_TYPES: &[&str] = &["DA", "MISPER", "ASLT", "CSE", "BURG", "ASB"];
const INVOLVEMENTS: &[&str] = &["V", "S", "W", "RP", "INV"];
const FLAGS: &[(&str, &str)] = &[
    ("WE", "Weapons: reported to carry a bladed article."),
    ("VI", "Violent: assault on police recorded."),
    ("SH", "Self-harm: disclosed to officers."),
    ("DR", "Drugs: possession with intent recorded."),
];
const CONCERNS: &[&str] = &["NEG", "PHY", "EMO", "SEX", "EXP"];
const STATUSES: &[&str] = &["O", "R", "C"];
const RELATIONS: &[&str] = &["SIB", "PTR", "EXP", "ASC"];

#[derive(Debug, Clone)]
enum Value {
    Int(i64),
    Text(String),
    Null,
}

#[derive(Debug)]
struct Insert {
    sql: &'static str,
    values: Vec<Value>,
}

#[derive(Debug, Default)]
struct Rows {
    inserts: Vec<Insert>,
}

/// SplitMix64: tiny, fast, and the same on every platform, which is all a
/// reproducible fixture needs.
#[derive(Debug)]
struct Rng(u64);

#[derive(Debug)]
struct Generator {
    rng: Rng,
    rows: Rows,
    next_addr: i64,
    next_flag: i64,
    next_risk: i64,
    next_concern: i64,
    occurrences: Vec<String>,
}

fn t(text: &str) -> Value {
    Value::Text(text.to_owned())
}

fn opt(text: Option<&str>) -> Value {
    text.map_or(Value::Null, t)
}

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`; the modulo bias is irrelevant for fixtures.
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn range(&mut self, low: i64, high: i64) -> i64 {
        let span = u64::try_from(high - low + 1).unwrap_or(1);
        low + i64::try_from(self.below(span)).unwrap_or(0)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let i = usize::try_from(self.below(items.len() as u64)).unwrap_or(0);
        items.get(i).copied().unwrap_or_default()
    }
}

impl Rows {
    fn push(&mut self, sql: &'static str, values: Vec<Value>) {
        self.inserts.push(Insert { sql, values });
    }

    fn count(&self, sql: &str) -> usize {
        self.inserts.iter().filter(|i| i.sql == sql).count()
    }

    fn summary(&self) -> SyntheticSummary {
        SyntheticSummary {
            people: self.count(INSERT_NOMINAL),
            addresses: self.count(INSERT_ADDR),
            occurrences: self.count(INSERT_OCCURRENCE),
            occurrence_links: self.count(INSERT_LINK),
            warning_flags: self.count(INSERT_WARN),
            risk_assessments: self.count(INSERT_DASH),
            child_concerns: self.count(INSERT_CONCERN),
            associations: self.count(INSERT_ASSOC),
            changes: self.count(INSERT_CHANGE),
            fixed: FixedPeople {
                leah_marsh: LEAH_MARSH.to_owned(),
                kerry_marsh: KERRY_MARSH.to_owned(),
                wayne_doyle: WAYNE_DOYLE.to_owned(),
                jordan_hale: JORDAN_HALE.to_owned(),
                robert_tables: ROBERT_TABLES.to_owned(),
            },
        }
    }
}

impl Generator {
    fn new(seed: u64) -> Self {
        Self {
            rng: Rng(seed),
            rows: Rows::default(),
            next_addr: 1,
            next_flag: 1,
            next_risk: 1,
            next_concern: 1,
            occurrences: Vec::new(),
        }
    }

    fn generate(mut self, people: usize) -> Rows {
        self.fixed();
        let mut previous: Option<i64> = None;
        for i in 0..people {
            let id = FIRST_GENERATED + i64::try_from(i).unwrap_or(0);
            self.random_person(id, previous);
            previous = Some(id);
        }
        // One change per person, in the order they were written: the feed a
        // change-log table gives (`CHANGE_SEQ` only ever grows).
        let people: Vec<(Value, Value)> = self
            .rows
            .inserts
            .iter()
            .filter(|i| i.sql == INSERT_NOMINAL)
            .filter_map(|i| Some((i.values.first()?.clone(), i.values.get(8)?.clone())))
            .collect();
        for (seq, (id, updated)) in (1..).zip(people) {
            self.rows
                .push(INSERT_CHANGE, vec![Value::Int(seq), id, updated]);
        }
        self.rows
    }

    #[expect(clippy::too_many_arguments, reason = "one argument per legacy column")]
    fn nominal(
        &mut self,
        id: i64,
        surname: &str,
        forename: &str,
        forename_2: Option<&str>,
        dob: &str,
        sex: &str,
        pnc: Option<&str>,
        nhs: Option<&str>,
        updated: &str,
    ) {
        self.rows.push(
            INSERT_NOMINAL,
            vec![
                Value::Int(id),
                t(surname),
                t(forename),
                opt(forename_2),
                t(dob),
                t(sex),
                opt(pnc),
                opt(nhs),
                t(updated),
            ],
        );
    }

    fn address(
        &mut self,
        id: i64,
        line_1: &str,
        line_2: Option<&str>,
        town: &str,
        postcode: &str,
        from: i64,
    ) {
        let addr_id = self.next_addr;
        self.next_addr += 1;
        self.rows.push(
            INSERT_ADDR,
            vec![
                Value::Int(addr_id),
                Value::Int(id),
                t(line_1),
                opt(line_2),
                t(town),
                t(postcode),
                Value::Int(from),
            ],
        );
    }

    fn occurrence(&mut self, number: &str, kind: &str, at: &str, location: &str, narrative: &str) {
        self.rows.push(
            INSERT_OCCURRENCE,
            vec![t(number), t(kind), t(at), t(location), t(narrative)],
        );
        self.occurrences.push(number.to_owned());
    }

    /// Links a person to an occurrence. A generated witness with an odd
    /// `NOM_ID` is under witness protection, so the data always holds some
    /// protectively marked links without drawing on the seed's stream (which
    /// would change every row after the first).
    fn link(&mut self, number: &str, id: i64, involvement: &str) {
        let protected = involvement == "W" && id >= FIRST_GENERATED && id % 2 == 1;
        let marking = if protected { t("WP") } else { Value::Null };
        self.rows.push(
            INSERT_LINK,
            vec![t(number), Value::Int(id), t(involvement), marking],
        );
    }

    fn warning(&mut self, id: i64, code: &str, text: &str, start: &str, end: Option<&str>) {
        let flag_id = self.next_flag;
        self.next_flag += 1;
        self.rows.push(
            INSERT_WARN,
            vec![
                Value::Int(flag_id),
                Value::Int(id),
                t(code),
                t(text),
                t(start),
                opt(end),
            ],
        );
    }

    fn dash(&mut self, id: i64, level: &str, at: &str, notes: &str) {
        let risk_id = self.next_risk;
        self.next_risk += 1;
        self.rows.push(
            INSERT_DASH,
            vec![
                Value::Int(risk_id),
                Value::Int(id),
                t(level),
                t(at),
                t(notes),
            ],
        );
    }

    fn concern(
        &mut self,
        id: i64,
        code: &str,
        detail: &str,
        raised: &str,
        status: &str,
        team: &str,
    ) {
        let concern_id = self.next_concern;
        self.next_concern += 1;
        self.rows.push(
            INSERT_CONCERN,
            vec![
                Value::Int(concern_id),
                Value::Int(id),
                t(code),
                t(detail),
                t(raised),
                t(status),
                t(team),
            ],
        );
    }

    fn assoc(&mut self, id: i64, other: i64, code: &str) {
        self.rows.push(
            INSERT_ASSOC,
            vec![Value::Int(id), Value::Int(other), t(code)],
        );
    }

    fn fixed(&mut self) {
        let (leah, kerry, wayne, jordan, robert) = (100_001, 100_002, 100_003, 100_004, 100_005);

        self.nominal(
            leah,
            "Marsh",
            "Leah",
            Some("Jade"),
            "14/05/2013",
            "F",
            None,
            Some("943 476 5919"),
            "20240612201500",
        );
        self.address(
            leah,
            "Flat 3, Kingsmead House",
            Some("27 Albion Drive"),
            "London",
            "e81dy",
            20_210_901,
        );
        self.address(leah, "12 Mill Lane", None, "Bromley", "BR1 3PQ", 20_130_601);

        self.nominal(
            kerry,
            "Marsh",
            "Kerry",
            Some("Anne"),
            "02/11/1989",
            "F",
            None,
            Some("999 000 0018"),
            "20240302090000",
        );
        self.address(
            kerry,
            "Flat 3, Kingsmead House",
            Some("27 Albion Drive"),
            "London",
            "E8 1DY",
            20_210_901,
        );

        self.nominal(
            wayne,
            "Doyle",
            "Wayne",
            Some("Lee"),
            "21/07/1986",
            "M",
            Some("08/123456K"),
            Some("9990000026"),
            "20240301235900",
        );
        self.address(
            wayne,
            "44 Station Road",
            None,
            "London",
            "n16 7ab",
            20_220_115,
        );

        self.occurrence(
            "CAD/2024/001234",
            "DA",
            "2024-03-01T22:15:00Z",
            "27 Albion Drive, London",
            "Neighbour reported shouting and a child crying. Male ex-partner arrested at scene.",
        );
        self.link("CAD/2024/001234", kerry, "V");
        self.link("CAD/2024/001234", wayne, "S");
        self.link("CAD/2024/001234", leah, "W");
        self.occurrence(
            "CAD/2024/002345",
            "MISPER",
            "2024-06-12T19:40:00Z",
            "Hackney Downs",
            "Child did not return from school; found safe at a friend's address four hours later.",
        );
        self.link("CAD/2024/002345", leah, "INV");
        self.link("CAD/2024/002345", kerry, "RP");

        self.concern(
            leah,
            "EMO",
            "Child present during domestic abuse incident CAD/2024/001234; referred to children's social care.",
            "2024-03-02",
            "R",
            "Eastborough MASH",
        );
        self.dash(
            kerry,
            "H",
            "02/03/2024 01:30",
            "Escalating abuse; strangulation disclosed. Referred to MARAC.",
        );
        self.warning(
            kerry,
            "SH",
            "Disclosed self-harm during incident response.",
            "02-MAR-2024",
            None,
        );
        self.warning(
            wayne,
            "VI",
            "Violent towards partners.",
            "15-JAN-2019",
            None,
        );
        self.warning(
            wayne,
            "WE",
            "Known to carry a knife.",
            "15-JAN-2019",
            Some("15-JAN-2025"),
        );
        self.assoc(leah, kerry, "PAR");
        self.assoc(kerry, leah, "CHI");
        self.assoc(kerry, wayne, "EXP");
        self.assoc(wayne, kerry, "EXP");

        // Every row about Jordan Hale is malformed in its own way.
        self.nominal(
            jordan,
            "Hale",
            "Jordan",
            None,
            "31/02/2010",
            "M",
            None,
            Some("943 476 5918"),
            "20240701120000",
        );
        self.address(
            jordan,
            "9 Cedar Close",
            None,
            "London",
            "not a postcode",
            20_200_101,
        );
        self.occurrence(
            "CAD/2024/009999",
            "ZZZ",
            "2024-07-01T12:00:00Z",
            "Cedar Close",
            &hostile_narrative(),
        );
        self.link("CAD/2024/009999", jordan, "V");
        self.dash(
            jordan,
            "X",
            "01/07/2024 12:00",
            "Unknown risk code entered by a legacy import.",
        );
        self.dash(
            jordan,
            "M",
            "01/07/2024 13:00",
            "Reassessed after the import was corrected.",
        );

        self.nominal(
            robert,
            "Tables",
            "Robert'); DROP TABLE NOMINAL;--",
            None,
            "01/04/2008",
            "M",
            None,
            Some("999 000 0034"),
            "20240101000000",
        );
        self.address(
            robert,
            "1 School Lane",
            None,
            "London",
            "SW9 8AA",
            20_080_401,
        );
    }

    fn random_person(&mut self, id: i64, previous: Option<i64>) {
        let sex = match self.rng.below(20) {
            0 => "U",
            n if n % 2 == 0 => "F",
            _ => "M",
        };
        let names = if sex == "F" { GIVEN_FEMALE } else { GIVEN_MALE };
        let forename = self.rng.pick(names);
        let forename_2 = self.rng.chance(50).then(|| self.rng.pick(names));
        let surname = self.rng.pick(SURNAMES);
        let year = self.rng.range(1950, 2020);
        let dob = format!(
            "{:02}/{:02}/{year}",
            self.rng.range(1, 28),
            self.rng.range(1, 12)
        );
        let pnc = (year < 2006 && self.rng.chance(40)).then(|| {
            format!(
                "{:02}/{}{}",
                self.rng.range(0, 24),
                self.rng.range(1, 999_999),
                char::from(b'A' + u8::try_from(self.rng.below(26)).unwrap_or(0))
            )
        });
        let nhs = self.rng.chance(70).then(|| self.nhs_number());
        let updated = format!(
            "{}{:02}{:02}{:02}{:02}{:02}",
            self.rng.range(2022, 2024),
            self.rng.range(1, 12),
            self.rng.range(1, 28),
            self.rng.range(0, 23),
            self.rng.range(0, 59),
            self.rng.range(0, 59)
        );
        self.nominal(
            id,
            surname,
            forename,
            forename_2,
            &dob,
            sex,
            pnc.as_deref(),
            nhs.as_deref(),
            &updated,
        );

        for _ in 0..self.rng.range(1, 2) {
            let street = format!("{} {}", self.rng.range(1, 180), self.rng.pick(STREETS));
            let area = usize::try_from(self.rng.below(AREAS.len() as u64)).unwrap_or(0);
            let (town, outward) = AREAS.get(area).copied().unwrap_or(("London", "N1"));
            let postcode = self.postcode(outward);
            let from = self.rng.range(2000, 2024) * 10_000
                + self.rng.range(1, 12) * 100
                + self.rng.range(1, 28);
            self.address(id, &street, None, town, &postcode, from);
        }

        if self.rng.chance(50) {
            let join_existing = !self.occurrences.is_empty() && self.rng.chance(40);
            let number = if join_existing {
                let i = usize::try_from(self.rng.below(self.occurrences.len() as u64)).unwrap_or(0);
                self.occurrences.get(i).cloned().unwrap_or_default()
            } else {
                let year = self.rng.range(2020, 2024);
                let number = format!("CAD/{year}/{:06}", 100_000 + self.occurrences.len());
                let kind = self.rng.pick(OCC_TYPES);
                let at = format!(
                    "{year}-{:02}-{:02}T{:02}:{:02}:00Z",
                    self.rng.range(1, 12),
                    self.rng.range(1, 28),
                    self.rng.range(0, 23),
                    self.rng.range(0, 59)
                );
                let location = format!("{} {}", self.rng.range(1, 180), self.rng.pick(STREETS));
                let narrative =
                    format!("Officers attended a report at {location}. Words of advice given.");
                self.occurrence(&number, kind, &at, &location, &narrative);
                number
            };
            let involvement = self.rng.pick(INVOLVEMENTS);
            self.link(&number, id, involvement);
        }
        if self.rng.chance(15) {
            let (code, text) = FLAGS
                .get(usize::try_from(self.rng.below(FLAGS.len() as u64)).unwrap_or(0))
                .copied()
                .unwrap_or(("WE", ""));
            let start = self.legacy_date();
            self.warning(id, code, text, &start, None);
        }
        if self.rng.chance(8) {
            let level = self.rng.pick(&["H", "M", "S"]);
            let at = format!(
                "{:02}/{:02}/{} {:02}:{:02}",
                self.rng.range(1, 28),
                self.rng.range(1, 12),
                self.rng.range(2019, 2024),
                self.rng.range(0, 23),
                self.rng.range(0, 59)
            );
            self.dash(id, level, &at, "DASH completed by attending officer.");
        }
        if year >= 2006 && self.rng.chance(10) {
            let code = self.rng.pick(CONCERNS);
            let raised = format!(
                "{}-{:02}-{:02}",
                self.rng.range(2019, 2024),
                self.rng.range(1, 12),
                self.rng.range(1, 28)
            );
            let status = self.rng.pick(STATUSES);
            self.concern(
                id,
                code,
                "Concern raised by attending officer.",
                &raised,
                status,
                "Safeguarding hub",
            );
        }
        if let Some(other) = previous
            && self.rng.chance(20)
        {
            let code = self.rng.pick(RELATIONS);
            self.assoc(id, other, code);
            self.assoc(other, id, code);
        }
    }

    /// A valid NHS number in the `999` range, spelt with or without spaces.
    fn nhs_number(&mut self) -> String {
        loop {
            let body = format!("999{:06}", self.rng.below(1_000_000));
            let sum: u32 = body
                .bytes()
                .zip((2..=10).rev())
                .map(|(b, w)| u32::from(b - b'0') * w)
                .sum();
            let check = match 11 - sum % 11 {
                11 => 0,
                10 => continue,
                d => d,
            };
            let number = format!("{body}{check}");
            if self.rng.chance(50) {
                let (a, rest) = number.split_at(3);
                let (b, c) = rest.split_at(3);
                return format!("{a} {b} {c}");
            }
            return number;
        }
    }

    /// A postcode in the given outward code, in one of the spellings legacy
    /// systems hold.
    fn postcode(&mut self, outward: &str) -> String {
        let letter = |rng: &mut Rng| {
            let i = usize::try_from(rng.below(INWARD_LETTERS.len() as u64)).unwrap_or(0);
            char::from(INWARD_LETTERS.get(i).copied().unwrap_or(b'A'))
        };
        let inward = format!(
            "{}{}{}",
            self.rng.below(10),
            letter(&mut self.rng),
            letter(&mut self.rng)
        );
        match self.rng.below(3) {
            0 => format!("{outward} {inward}"),
            1 => format!("{outward}{inward}").to_lowercase(),
            _ => format!(" {} {} ", outward.to_lowercase(), inward),
        }
    }

    /// A date as `DD-MON-YYYY`.
    fn legacy_date(&mut self) -> String {
        let month = usize::try_from(self.rng.below(12)).unwrap_or(0);
        format!(
            "{:02}-{}-{}",
            self.rng.range(1, 28),
            MONTHS.get(month).copied().unwrap_or("JAN"),
            self.rng.range(2015, 2024)
        )
    }
}

/// Exactly 100 KiB of text, ending in a full stop so trimming cannot
/// shorten it.
fn hostile_narrative() -> String {
    let mut narrative = "Repeated narrative text. ".repeat(100 * 1024 / 25);
    narrative.pop();
    narrative.push('.');
    narrative
}

/// A valid NHS number in the `999` test range, spaced as `999 123 4567`.
pub(crate) fn test_nhs_number(rng: &mut fastrand::Rng) -> String {
    loop {
        let body = format!("999{:06}", rng.u32(0..1_000_000));
        let sum: u32 = body
            .bytes()
            .zip((2..=10).rev())
            .map(|(b, w)| u32::from(b - b'0') * w)
            .sum();
        let check = match 11 - sum % 11 {
            11 => 0,
            10 => continue,
            d => d,
        };
        let number = format!("{body}{check}");
        if let (Some(a), Some(b), Some(c)) = (number.get(..3), number.get(3..6), number.get(6..)) {
            return format!("{a} {b} {c}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalise;

    #[test]
    fn generation_is_deterministic() {
        let a = Generator::new(7).generate(50);
        let b = Generator::new(7).generate(50);
        let c = Generator::new(8).generate(50);
        let text = |rows: &Rows| format!("{:?}", rows.inserts);
        assert_eq!(text(&a), text(&b));
        assert_ne!(text(&a), text(&c));
        assert_eq!(a.summary().people, 55);
    }

    #[test]
    fn generated_identifiers_are_valid_and_never_the_fixed_peoples() {
        let rows = Generator::new(42).generate(500);
        for insert in rows.inserts.iter().filter(|i| i.sql == INSERT_NOMINAL) {
            let Some(Value::Int(id)) = insert.values.first() else {
                panic!("no id");
            };
            if *id < 200_000 {
                continue;
            }
            if let Some(Value::Text(surname)) = insert.values.get(1) {
                assert!(!["Marsh", "Doyle", "Hale", "Tables"].contains(&surname.as_str()));
            }
            if let Some(Value::Text(nhs)) = insert.values.get(7) {
                let nhs = normalise::nhs_number(nhs).unwrap();
                assert!(nhs.starts_with("999"), "{nhs}");
            }
            if let Some(Value::Text(pnc)) = insert.values.get(6) {
                normalise::pnc_id(pnc).unwrap();
            }
        }
        for insert in rows.inserts.iter().filter(|i| i.sql == INSERT_ADDR) {
            let Some(Value::Int(id)) = insert.values.get(1) else {
                panic!("no id");
            };
            if let (true, Some(Value::Text(postcode))) = (*id >= 200_000, insert.values.get(5)) {
                let postcode = normalise::postcode(postcode).unwrap();
                assert_ne!(postcode, "E8 1DY");
            }
        }
    }

    #[test]
    fn the_fixed_peoples_numbers_are_as_documented() {
        assert_eq!(normalise::nhs_number("943 476 5919").unwrap(), "9434765919");
        assert!(normalise::nhs_number("943 476 5918").is_err());
        for valid in ["999 000 0018", "9990000026", "999 000 0034"] {
            normalise::nhs_number(valid).unwrap();
        }
        assert_eq!(hostile_narrative().trim().len(), 100 * 1024);
    }
}
