//! The mapping engine every connector kind shares: compiling a
//! [`Mapping`](crate::mapping::Mapping), reading source rows through it into
//! people and records, and the search rules.
//!
//! A kind of connector supplies a [`Dialect`](compile::Dialect) (what it
//! compiles for itself: SQL statements, HTTP requests, files) and rows that
//! answer "what is in column `x`" ([`Row`](row::Row)); everything about
//! fields, code lists, formats, bounds and problems is decided here, once.

pub(crate) mod assemble;
pub(crate) mod compile;
pub(crate) mod params;
pub(crate) mod reader;
pub(crate) mod row;
pub(crate) mod search;
