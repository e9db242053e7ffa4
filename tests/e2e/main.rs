//! End-to-end tests of orex over real sockets, real mutual TLS and real sled
//! stores. Each test starts its own stack with [`orex_e2e::Stack::spawn`].

mod audit;
mod audit_replicas;
mod audit_scale;
mod authentication;
mod authorization;
mod backup;
mod durability;
mod emergency;
mod error_details;
mod isolation;
mod lifecycle;
mod log_integrity;
mod malformed;
mod manifests;
mod operations;
mod overload;
mod risk;
mod risk_live;
mod rotation;
mod signals;
mod streaming;
mod tokens;
mod validation;
mod visibility;
