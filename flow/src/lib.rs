//! The flow model's logic, shared by proxy-core, script-host, flow-store and the cli.
//!
//! The flow *types* live in `flowtap-proto` ([`flowtap_proto::v1::Flow`]); this crate is what
//! every service does with them, in mitmproxy's own terms:
//!
//! - [`tnetstring`]: the value encoding of mitmproxy flow files, byte for byte.
//! - [`state`]: `Flow` ⇄ mitmproxy's `get_state()` dict (format version 21).
//! - [`compat`]: migration of older flow-state dicts (versions 0.11 … 20) to 21.
//! - [`flowfile`]: [`FlowReader`] and [`FlowWriter`] for `.mitm` files (and HAR on read).
//! - [`filter`]: mitmproxy's filter language (`~d host & ~c 404`), [`Filter::parse`].
//! - [`model`]: mitmproxy's convenience accessors (`pretty_url`, `pretty_host`, ...).
//! - [`har`]: HAR 1.2 export in mitmproxy's `savehar` shape, and HAR import.
//! - [`content`]: content-encoding decoding (gzip, deflate, br, zstd).
//! - [`spill`]: large bodies held in an unlinked file instead of the heap.
//!
//! A reader new to the crate starts at [`flowfile`] (how files become flows) and [`filter`].

pub mod compat;
pub mod content;
pub mod filter;
pub mod flowfile;
pub mod har;
pub mod model;
pub mod spill;
pub mod state;
pub mod tnetstring;

pub use filter::{Filter, FilterError};
pub use flowfile::{FlowReadError, FlowReader, FlowWriter};
pub use model::{FlowExt, RequestExt, ResponseExt};
