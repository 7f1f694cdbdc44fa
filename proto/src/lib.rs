//! The wire contracts between flowtap's services, generated from `proto/flowtap/v1/*.proto`.
//!
//! - [`v1::Flow`] and its parts: the flow model every service shares. It mirrors mitmproxy's flow
//!   state (format version 21) field for field; `flowtap-flow` adds the logic (state dicts,
//!   flow files, filters).
//! - [`v1::script_host_client`] / [`v1::script_host_server`]: the script protocol between
//!   proxy-core and script-host workers (`script.proto`).
//! - [`v1::flow_store_client`] / [`v1::flow_store_server`]: the flow archive API (`store.proto`).
//!
//! This crate holds no logic and no runtime: only the generated types.

/// Version 1 of the protocol.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod v1 {
    tonic::include_proto!("flowtap.v1");
}
