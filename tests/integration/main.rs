//! Integration tests: the real `gatehouse` binary, on port 0, against in-process backends.

mod harness;

mod access;
mod acme;
mod auth;
mod balance;
mod defects;
mod files;
mod first_run;
mod geo;
mod headers;
mod health;
mod import_nginx;
mod lifecycle;
mod limits;
mod metrics;
mod mtls;
mod oneliners;
mod openapi;
mod packaging;
mod pipeline;
mod protocols;
mod registry;
mod reload;
mod resilience;
mod routing;
mod security;
mod store;
mod streams;
mod tls;
mod trace;
mod waf;
mod webhooks;
