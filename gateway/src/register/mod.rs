//! A versioned register in the ledger's database: the machinery the
//! agreement register ([`crate::agreements`]) and the trust registry
//! ([`crate::identity::store`]) share, so both keep one set of rules about
//! when a change is in force.
//!
//! Each register is a table of versions keyed by (key, version) and a change
//! counter (the epoch), named by its [`Tables`]; its values are a domain type
//! that knows its own canonical text ([`Versioned`]).
//!
//! - A change is written in three steps: the version is reserved (stored,
//!   not in force), its `ADMINISTER` entry is appended to the ledger, and
//!   only then is the version committed with the entry's id ([`record`]).
//!   Only committed versions are ever read, so a change whose audit append
//!   failed never takes effect anywhere; a reservation left by a crashed
//!   process is cleared once older than [`STALE_RESERVATION`].
//! - A commit bumps the epoch and, on PostgreSQL, sends `NOTIFY` on the
//!   register's channel in the same transaction.
//! - Each replica follows the register with one loop ([`follow`]): it
//!   rebuilds its in-memory view on each announcement, on each polling tick
//!   (the bound when `LISTEN` is unavailable, and the only way on SQLite),
//!   and when a caller on this replica asks through a [`Reloader`].
//!
//! SQLite and PostgreSQL run the same statements; [`Db`] picks the pool.

mod db;
mod follow;
mod record;
mod store;

pub(crate) use db::Db;
pub use follow::{Follower, Reloader, follow};
pub use record::{Origin, change_entry, record};
pub use store::{
    Change, Reserved, STALE_RESERVATION, StoreError, Stored, Tables, VersionStore, Versioned,
};
