//! Which nginx directives the importer translates at each level, and what it says about
//! the others: one table, so a directive is explained the same way wherever it appears.
//! A reason that starts with "not needed:" means Gatehouse does the same without it;
//! any other reason means behaviour may differ and the line deserves a look.

use super::parse::Directive;

/// Where a directive is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    Http,
    Server,
    Location,
}

/// Directives that reach routes through nginx's inheritance (http → server → location):
/// the route builder reads them where they apply, so they are not reported where written.
const INHERITED: &[&str] = &[
    "root",
    "index",
    "autoindex",
    "client_max_body_size",
    "client_body_timeout",
    "proxy_connect_timeout",
    "proxy_read_timeout",
    "proxy_set_header",
    "proxy_hide_header",
    "proxy_ssl_name",
    "proxy_ssl_trusted_certificate",
    "proxy_ssl_certificate",
    "proxy_ssl_certificate_key",
    "proxy_ssl_verify",
    "add_header",
    "expires",
    "allow",
    "deny",
    "auth_basic",
    "auth_basic_user_file",
];

/// Whether the importer deals with `name` at `level` (translating it, or explaining
/// itself where it meets it); everything else is reported with [`reason`].
pub(super) fn handled(level: Level, name: &str) -> bool {
    INHERITED.contains(&name)
        || match level {
            Level::Http => matches!(
                name,
                "http" | "server" | "upstream" | "ssl_certificate" | "ssl_certificate_key" | "error_page"
            ),
            Level::Server => matches!(
                name,
                "listen"
                    | "server_name"
                    | "location"
                    | "return"
                    | "rewrite"
                    | "try_files"
                    | "ssl"
                    | "ssl_certificate"
                    | "ssl_certificate_key"
                    | "error_page"
            ),
            Level::Location => matches!(
                name,
                "location"
                    | "proxy_pass"
                    | "grpc_pass"
                    | "fastcgi_pass"
                    | "uwsgi_pass"
                    | "scgi_pass"
                    | "memcached_pass"
                    | "alias"
                    | "return"
                    | "rewrite"
                    | "try_files"
                    | "limit_except"
                    | "internal"
            ),
        }
}

/// Why `d` is not translated, in a few words.
pub(super) fn reason(d: &Directive) -> String {
    let name = d.name.as_str();
    let first = d.arg(0).unwrap_or("");
    let text = match name {
        "worker_processes" => "set `workers` in the main file (default: one per CPU)",
        "events" | "worker_connections" | "multi_accept" | "use" | "accept_mutex" | "accept_mutex_delay" => {
            "not needed: Gatehouse accepts connections itself (server.max_connections in the main file caps them)"
        }
        "worker_rlimit_nofile" => "not needed: Gatehouse raises its open-file limit to the hard limit itself",
        "user"
        | "pid"
        | "daemon"
        | "master_process"
        | "load_module"
        | "worker_cpu_affinity"
        | "worker_priority"
        | "worker_shutdown_timeout"
        | "pcre_jit"
        | "env"
        | "thread_pool"
        | "lock_file"
        | "working_directory"
        | "timer_resolution"
        | "ssl_engine"
        | "debug_points" => "not needed: a setting of the nginx process",
        "error_log" => "Gatehouse logs to stderr (log.level and log.format in the main file)",
        "access_log" | "log_format" | "open_log_file_cache" | "log_not_found" | "log_subrequest" | "rewrite_log" => {
            "Gatehouse logs every request itself (stderr or log.access_file, and its database: logging in the main file)"
        }
        "types"
        | "default_type"
        | "types_hash_max_size"
        | "types_hash_bucket_size"
        | "charset"
        | "source_charset"
        | "charset_types"
        | "override_charset" => {
            "not needed: Gatehouse picks Content-Type from the file extension (text types with charset=utf-8)"
        }
        "server_names_hash_bucket_size"
        | "server_names_hash_max_size"
        | "variables_hash_max_size"
        | "variables_hash_bucket_size"
        | "map_hash_max_size"
        | "map_hash_bucket_size"
        | "proxy_headers_hash_max_size"
        | "proxy_headers_hash_bucket_size" => "not needed: sizes of nginx's internal tables",
        "sendfile"
        | "sendfile_max_chunk"
        | "tcp_nopush"
        | "tcp_nodelay"
        | "aio"
        | "directio"
        | "read_ahead"
        | "open_file_cache"
        | "open_file_cache_valid"
        | "open_file_cache_min_uses"
        | "open_file_cache_errors"
        | "output_buffers"
        | "postpone_output"
        | "etag"
        | "if_modified_since" => {
            "not needed: Gatehouse does its own file and socket I/O (and sends ETag and Last-Modified for files)"
        }
        "proxy_buffering"
        | "proxy_buffers"
        | "proxy_buffer_size"
        | "proxy_busy_buffers_size"
        | "proxy_max_temp_file_size"
        | "proxy_temp_file_write_size"
        | "proxy_temp_path"
        | "proxy_request_buffering"
        | "client_body_buffer_size"
        | "client_body_temp_path"
        | "client_header_buffer_size"
        | "client_body_in_file_only"
        | "client_body_in_single_buffer"
        | "fastcgi_temp_path"
        | "uwsgi_temp_path"
        | "scgi_temp_path"
        | "chunked_transfer_encoding" => "not needed: Gatehouse streams bodies as they arrive, without temporary files",
        "proxy_http_version" => "not needed: Gatehouse speaks HTTP/1.1 to http:// backends and keeps connections alive",
        "keepalive_timeout" => "set server.keepalive_timeout in the main file",
        "client_header_timeout" => "set server.header_read_timeout in the main file",
        "send_timeout" => "set server.send_timeout in the main file",
        "keepalive_requests"
        | "keepalive_time"
        | "keepalive_disable"
        | "lingering_close"
        | "lingering_time"
        | "lingering_timeout"
        | "reset_timedout_connection" => {
            "not needed: Gatehouse manages client connections itself (server.keepalive_timeout in the main file)"
        }
        "large_client_header_buffers" => {
            "see limits.request_headers (the whole header section, default 64KiB) and limits.uri_length (default 8192); not translated"
        }
        "ssl_protocols"
        | "ssl_ciphers"
        | "ssl_prefer_server_ciphers"
        | "ssl_ecdh_curve"
        | "ssl_conf_command"
        | "ssl_early_data"
        | "ssl_password_file" => "Gatehouse picks TLS versions and ciphers itself (TLS 1.2 and 1.3, AEAD suites only)",
        "ssl_session_cache"
        | "ssl_session_timeout"
        | "ssl_session_tickets"
        | "ssl_session_ticket_key"
        | "ssl_buffer_size" => "not needed: Gatehouse manages TLS sessions itself (tickets on)",
        "ssl_dhparam" => "not needed: Gatehouse uses ECDHE key exchange only",
        "ssl_stapling"
        | "ssl_stapling_verify"
        | "ssl_stapling_file"
        | "ssl_stapling_responder"
        | "ssl_trusted_certificate" => "Gatehouse does no OCSP stapling; not translated",
        "ssl_client_certificate" | "ssl_verify_client" | "ssl_verify_depth" | "ssl_crl" => {
            "client certificates: give the site tls.client_ca and its routes auth.client_cert (a client without \
             one still connects); not translated"
        }
        "http2"
        | "http2_max_concurrent_streams"
        | "http2_recv_buffer_size"
        | "http2_chunk_size"
        | "http2_body_preread_size"
        | "http2_idle_timeout"
        | "http2_push"
        | "http2_push_preload" => "not needed: Gatehouse offers HTTP/2 on HTTPS through ALPN",
        "http3" | "quic_retry" | "quic_gso" | "quic_host_key" | "quic_bpf" => "set http3: true in the main file",
        "resolver" | "resolver_timeout" => {
            "not needed: Gatehouse resolves backend names itself (again every dns_refresh, main file)"
        }
        "set_real_ip_from" | "real_ip_header" | "real_ip_recursive" => {
            "set trusted_proxies in the main file: Gatehouse then reads the client from their X-Forwarded-For"
        }
        "limit_req" | "limit_req_zone" | "limit_req_status" | "limit_req_log_level" | "limit_req_dry_run" => {
            "rate limits work differently in Gatehouse (options.rate_limit, per client and route); not translated"
        }
        "limit_conn" | "limit_conn_zone" | "limit_conn_status" | "limit_conn_log_level" => {
            "see server.max_connections_per_ip in the main file; not translated"
        }
        "limit_rate" | "limit_rate_after" => "Gatehouse does not throttle responses; not translated",
        "if" => "`if` has no equivalent; write a route with `match` (path, methods) instead",
        "set" => "variables have no equivalent in Gatehouse; not translated",
        "map" if d.arg(1) == Some("$connection_upgrade") => "not needed: Gatehouse passes WebSocket upgrades itself",
        "map" | "geo" | "split_clients" => {
            "variables have no equivalent (see `geo` rules and `split` routes for what they often do); not translated"
        }
        "auth_request" | "auth_request_set" => "see options.auth.forward (forward auth); not translated",
        "satisfy" => "Gatehouse applies ip rules and auth both (satisfy all); not translated",
        "sub_filter" | "sub_filter_once" | "sub_filter_types" | "sub_filter_last_modified" => {
            "Gatehouse does not rewrite response bodies; not translated"
        }
        "proxy_redirect" if first == "off" => "not needed: Gatehouse passes Location headers as the backend sent them",
        "proxy_redirect" => "Gatehouse passes Location headers as the backend sent them; not translated",
        "proxy_cookie_path" | "proxy_cookie_domain" | "proxy_cookie_flags" => {
            "Gatehouse passes cookies as the backend sent them; not translated"
        }
        "proxy_next_upstream" | "proxy_next_upstream_tries" | "proxy_next_upstream_timeout" => {
            "Gatehouse moves on to the next backend when a connect fails; more is an upstream's `retries`; not translated"
        }
        "proxy_send_timeout" => {
            "Gatehouse gives a backend that stops reading the request timeouts.read (timeouts.write is the \
             client's pause between body chunks, nginx's client_body_timeout); not translated"
        }
        "proxy_intercept_errors" => "a backend's error answers pass as they are in Gatehouse; not translated",
        "proxy_pass_header" => "not needed: Gatehouse passes the backend's headers (hop-by-hop ones aside)",
        "proxy_pass_request_headers"
        | "proxy_pass_request_body"
        | "proxy_ignore_headers"
        | "proxy_method"
        | "proxy_set_body"
        | "proxy_store"
        | "proxy_bind"
        | "proxy_socket_keepalive" => "no equivalent in Gatehouse; not translated",
        "proxy_ssl_server_name" => "not needed: Gatehouse sends SNI to https:// backends",
        "proxy_ssl_protocols" | "proxy_ssl_ciphers" | "proxy_ssl_session_reuse" | "proxy_ssl_verify_depth" => {
            "not needed: Gatehouse picks TLS settings to backends itself"
        }
        "error_page" => "error pages inside a location: Gatehouse's error_pages belong to a site; not translated",
        "recursive_error_pages" => "not needed: Gatehouse's error pages are files, not redirects",
        "absolute_redirect" | "port_in_redirect" | "server_name_in_redirect" => {
            "Gatehouse sends redirect targets as written (relative ones stay relative); not translated"
        }
        "merge_slashes" => "Gatehouse always removes empty path segments (as merge_slashes on); not translated",
        "underscores_in_headers" | "ignore_invalid_headers" => "Gatehouse's header rules are fixed; not translated",
        "server_tokens" | "more_set_headers" | "more_clear_headers" | "add_trailer" => {
            "no equivalent in Gatehouse; not translated"
        }
        "stub_status" => "see /metrics on Gatehouse's admin listener; not translated",
        "stream" | "mail" => "a TCP or mail proxy: see `streams` (L4) in docs/configuration.md; not translated",
        "upstream" => "an upstream needs a name; not translated",
        "server_name" | "listen" => "only meaningful in a server block; not translated",
        "ssl" => "not needed: whether a site speaks HTTPS follows from listen.https in the main file",
        n if n.contains("_by_lua") || n.starts_with("lua_") => {
            "Lua (OpenResty): Gatehouse runs no scripts; what it does must be done otherwise; not translated"
        }
        n if n.starts_with("gzip") || n.starts_with("brotli") || n.starts_with("zstd") => {
            "response compression is not built into Gatehouse yet: responses go out uncompressed"
        }
        n if n.starts_with("proxy_cache") || n.starts_with("fastcgi_cache") || n.starts_with("uwsgi_cache") => {
            "Gatehouse has no response cache; not translated"
        }
        n if n.starts_with("fastcgi_") || n.starts_with("uwsgi_") || n.starts_with("scgi_") => {
            "FastCGI/uWSGI/SCGI settings: Gatehouse speaks HTTP to backends; not translated"
        }
        n if n.starts_with("autoindex_") => {
            "Gatehouse's listing (browse: true) has one fixed HTML format; not translated"
        }
        n if n.starts_with("open_file_cache") || n.starts_with("client_body_") => {
            "not needed: Gatehouse does its own file and body handling"
        }
        _ => "no equivalent in Gatehouse; not translated",
    };
    text.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_reasons() {
        assert!(handled(Level::Http, "root") && handled(Level::Location, "proxy_pass"));
        assert!(!handled(Level::Http, "proxy_pass") && !handled(Level::Location, "listen"));
        let d = |name: &str, args: &[&str]| Directive {
            name: name.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            block: None,
            file: std::rc::Rc::new("x.conf".into()),
            line: 1,
        };
        assert!(reason(&d("gzip_types", &["text/css"])).contains("compression"));
        assert!(reason(&d("proxy_redirect", &["off"])).starts_with("not needed"));
        assert!(!reason(&d("proxy_redirect", &["http://a/", "/"])).starts_with("not needed"));
        assert!(reason(&d("map", &["$http_upgrade", "$connection_upgrade"])).starts_with("not needed"));
        assert!(reason(&d("ssl_protocols", &["TLSv1.2"])).contains("TLS 1.2 and 1.3"));
        assert!(reason(&d("something_new", &[])).contains("no equivalent"));
    }
}
