//! The WAF's smaller rule groups: path traversal, command injection, scanner user agents
//! and suspicious headers. Each reads a normalised, lower-case value and names the rule
//! that fired. Substring searches and single passes only: linear in the input.

use aho_corasick::AhoCorasick;
use std::sync::OnceLock;

/// Files and places a traversal goes for.
const SENSITIVE: &[&str] = &[
    "etc/passwd",
    "etc/shadow",
    "etc/group",
    "etc/hosts",
    "etc/issue",
    "etc/motd",
    "etc/master.passwd",
    "proc/self/",
    "proc/version",
    "boot.ini",
    "win.ini",
    "system.ini",
    "windows/system32",
    "winnt/system32",
    "system32/drivers/etc",
    "web-inf/web.xml",
    "/.htaccess",
    "/.htpasswd",
    "/.git/",
    "/.svn/",
    "/.ssh/",
    "id_rsa",
    ".bash_history",
    "/var/log/",
    "/etc/nginx/",
    "/etc/apache",
    "c:/windows",
    "c:\\windows",
    "/wp-config.php",
    "/etc/services",
    "desktop.ini",
    "inetpub/",
    "global.asa",
];

/// Wrappers that turn a file parameter into something else.
const SCHEMES: &[&str] = &["file://", "php://", "phar://", "expect://", "zip://", "glob://", "jar:", "netdoc:"];

/// Why `s` reads as path traversal, if it does. `nul`: the raw value held a NUL byte.
pub fn traversal(s: &str, nul: bool) -> Option<&'static str> {
    if nul {
        return Some("traversal-nul");
    }
    let b = s.as_bytes();
    // `../`, `..\`, `/..` at the end, `..;/` (Tomcat), `....//` (filters that strip `../`
    // once).
    // Each run of two or more dots, read once: after a boundary, and followed by a
    // separator (or, exactly two of them, ending a path).
    let mut from = 0;
    while let Some(found) = s[from..].find("..") {
        let at = from + found;
        let end = at + b[at..].iter().take_while(|&&c| c == b'.').count();
        let before_ok = at == 0 || matches!(b[at - 1], b'/' | b'\\' | b'=' | b' ' | b'"' | b'\'' | b':');
        let next = b.get(end).copied();
        let ends_path = next.is_none() && end - at == 2 && at > 0 && matches!(b[at - 1], b'/' | b'\\');
        if before_ok && (matches!(next, Some(b'/' | b'\\' | b';')) || ends_path) {
            return Some("traversal-dotdot");
        }
        from = end;
    }
    if s.len() >= 6 && (s.contains('/') || s.contains('\\') || s.contains(".ini")) {
        static FILES: OnceLock<Option<AhoCorasick>> = OnceLock::new();
        let files = FILES.get_or_init(|| AhoCorasick::new(SENSITIVE.iter().map(|f| f.replace('\\', "/"))).ok());
        let unix = if s.contains('\\') { std::borrow::Cow::Owned(s.replace('\\', "/")) } else { s.into() };
        if files.as_ref().is_some_and(|f| f.is_match(unix.as_ref())) {
            return Some("traversal-file");
        }
    }
    if s.contains(':') && SCHEMES.iter().any(|p| s.contains(p)) {
        return Some("traversal-scheme");
    }
    None
}

/// Commands an injection runs first: reconnaissance, download, shells.
const COMMANDS: &[&str] = &[
    "cat",
    "id",
    "whoami",
    "uname",
    "ls",
    "pwd",
    "ping",
    "nslookup",
    "dig",
    "host",
    "wget",
    "curl",
    "nc",
    "ncat",
    "netcat",
    "bash",
    "sh",
    "zsh",
    "ksh",
    "csh",
    "dash",
    "sleep",
    "perl",
    "python",
    "python3",
    "php",
    "ruby",
    "rm",
    "chmod",
    "kill",
    "ps",
    "ifconfig",
    "ipconfig",
    "netstat",
    "systeminfo",
    "ver",
    "dir",
    "type",
    "powershell",
    "cmd",
    "certutil",
    "bitsadmin",
    "telnet",
    "tftp",
    "xterm",
    "head",
    "tail",
    "more",
    "awk",
    "env",
    "printenv",
    "hostname",
    "crontab",
    "echo",
    "net",
    "timeout",
    "busybox",
    "base64",
    "find",
    "whoami.exe",
    "cmd.exe",
    "powershell.exe",
    "phpinfo",
    "expr",
    "eval",
    "exec",
    "system",
    "passthru",
    "shell_exec",
    "popen",
    "proc_open",
    "pcntl_exec",
    "set",
    "exit",
    "die",
    "md5",
    "assert",
    "base64_decode",
    "file_get_contents",
    "include",
    "require",
    "read",
];

/// Commands that are also common words: they count only with an argument that looks like
/// one (a path, an option, a number, an address).
const WORDLIKE: &[&str] = &[
    "cat", "host", "sleep", "kill", "type", "dir", "head", "tail", "more", "find", "echo", "net", "timeout", "ver",
    "env", "expr", "system", "id", "ping", "dig", "set", "exit", "die", "include", "require", "read",
];

/// Script-language calls that run code when a value reaches `eval` (PHP mostly).
const CODE_CALLS: &[&str] = &[
    "exit",
    "die",
    "md5",
    "assert",
    "eval",
    "system",
    "passthru",
    "shell_exec",
    "exec",
    "popen",
    "phpinfo",
    "base64_decode",
    "file_get_contents",
    "print",
    "sleep",
    "usleep",
];

/// Why `s` reads as shell command injection, if it does.
pub fn command(s: &str) -> Option<&'static str> {
    let b = s.as_bytes();
    if s.contains("${ifs") || s.contains("$ifs$") || s.contains("${path:") || s.contains("${home") {
        return Some("cmd-shell-syntax");
    }
    if !b.iter().any(|c| matches!(c, b';' | b'|' | b'&' | b'`' | b'$' | b'\n' | b'\r' | b'\'' | b'"' | b'.')) {
        return None;
    }
    // Where the last separator's run of separators and spaces ended: each byte is read
    // once, however many separators follow one another.
    let mut read_to = 0;
    for (at, &c) in b.iter().enumerate() {
        if at < read_to {
            continue;
        }
        let start = match c {
            b';' | b'|' | b'&' | b'`' | b'\n' | b'\r' => at + 1,
            // String concatenation into an `eval` (`'.exit(…)`).
            b'.' if at > 0 && matches!(b[at - 1], b'\'' | b'"') => at + 1,
            b'$' if b.get(at + 1) == Some(&b'(') => at + 2,
            // `'id'` hides nothing; `';id;'` is caught by `;`.
            _ => continue,
        };
        let mut i = start;
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'|' | b'&' | b'\n' | b'\r' | b'{' | b'(' | b'\'' | b'"') {
            i += 1;
        }
        read_to = i;
        // `/bin/cat`, `/usr/bin/id`: the command's own name counts.
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'/' | b'.' | b'_' | b'\\' | b'-')) {
            j += 1;
        }
        let path = &s[i..j];
        let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
        if name.is_empty() || !COMMANDS.contains(&name) {
            continue;
        }
        let rest = &s[j..];
        let arg = rest.trim_start_matches([' ', '\t', '$', '{', '}', '\'', '"']);
        let end_ok = rest.is_empty()
            || CODE_CALLS.contains(&name) && rest.starts_with('(')
            || rest.starts_with([';', '|', '&', '`', ')', '\n', '\r', '<', '>', '$', '\'', '"', ',', '{', '}'])
            || rest.starts_with(' ')
            || rest.starts_with('\t');
        if !end_ok {
            continue;
        }
        // `;exit(md5('x'));//`: code for an `eval`.
        if CODE_CALLS.contains(&name) && rest.starts_with('(') {
            return Some("cmd-code");
        }
        if WORDLIKE.contains(&name) && !path.contains('/') {
            let argument_like = arg.starts_with(['/', '-', '.', '~', '$', '%', '<', '>', '|', ';', '`', '\\', '&'])
                || arg.starts_with(|c: char| c.is_ascii_digit())
                || arg.starts_with("c:")
                || arg.is_empty() && matches!(name, "id" | "ver" | "env" | "more" | "dir" | "set");
            if !argument_like {
                continue;
            }
        }
        return Some("cmd-injection");
    }
    None
}

/// `None` only if the automaton could not be built (it always can: fixed literals).
fn scanners() -> Option<&'static AhoCorasick> {
    static SCANNERS: OnceLock<Option<AhoCorasick>> = OnceLock::new();
    SCANNERS
        .get_or_init(|| {
            let names = [
                "sqlmap",
                "nikto",
                "nmap",
                "masscan",
                "zgrab",
                "nuclei",
                "wpscan",
                "acunetix",
                "netsparker",
                "nessus",
                "openvas",
                "w3af",
                "dirbuster",
                "gobuster",
                "feroxbuster",
                "ffuf",
                "wfuzz",
                "hydra",
                "arachni",
                "skipfish",
                "whatweb",
                "jaeles",
                "xsstrike",
                "commix",
                "havij",
                "zmeu",
                "morfeus",
                "fimap",
                "sqlninja",
                "pangolin",
                "appscan",
                "webinspect",
                "paros",
                "bsqlbf",
                "grabber",
                "dirb/",
                "burpcollaborator",
                "qualys",
                "nmap scripting engine",
                "zap/",
                "wapiti",
                "vega/",
                "brutus",
                "jorgee",
                "masscan-ng",
                "censysinspect",
                "interactsh",
                "x8/",
                "ohdear-scanner",
            ];
            AhoCorasick::new(names).ok()
        })
        .as_ref()
}

/// A known attack tool's User-Agent (lower case).
pub fn scanner(user_agent: &str) -> Option<&'static str> {
    scanners().is_some_and(|s| s.is_match(user_agent)).then_some("scanner-user-agent")
}

/// Header values that attack the server rather than the application: Shellshock, Log4Shell
/// lookups. `value` is lower case.
pub fn header_value(value: &str) -> Option<&'static str> {
    if value.trim_start().starts_with("() {") || value.contains("() { :") {
        return Some("header-shellshock");
    }
    if let Some(at) = value.find("${") {
        let rest = &value[at..];
        if ["jndi", "lower:", "upper:", "::-", "env:", "sys:", "date:", "ctx:", "main:"]
            .iter()
            .any(|k| rest.contains(k))
        {
            return Some("header-jndi");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_forms() {
        for attack in [
            "../../etc/passwd",
            "..\\..\\windows\\win.ini",
            "/files/..;/admin",
            "....//....//x",
            "/x/..",
            "file:///etc/hosts",
            "php://filter/resource=index",
            "/etc/passwd",
        ] {
            assert!(traversal(attack, false).is_some(), "missed {attack:?}");
        }
        assert_eq!(traversal("a", true), Some("traversal-nul"));
        for benign in ["/static/app.js", "wait... what?", "1..10", "/docs/v1.2/", "version 2..3", "..."] {
            assert_eq!(traversal(benign, false), None, "flagged {benign:?}");
        }
    }

    #[test]
    fn command_forms() {
        for attack in [
            ";id",
            "&set&",
            ";read;",
            "&quot;;id&quot;",
            "| cat /etc/passwd",
            "&& whoami",
            "`uname -a`",
            "$(curl http://x)",
            "1;sleep 5",
            "a|nc 10.0.0.1 4444",
            "${IFS}cat${IFS}x",
            "x\nid",
        ] {
            assert!(command(&attack.to_lowercase()).is_some(), "missed {attack:?}");
        }
        for benign in [
            "tom & jerry",
            "i like dogs; cat people are ok",
            "salt & pepper; more please",
            "fish | chips",
            "rock & roll; find out more",
            "q&a",
        ] {
            assert_eq!(command(benign), None, "flagged {benign:?}");
        }
    }

    #[test]
    fn scanners_and_headers() {
        assert!(scanner("sqlmap/1.8 (https://sqlmap.org)").is_some());
        assert!(scanner("mozilla/5.0 (x11; linux x86_64) firefox/133.0").is_none());
        assert!(header_value("() { :; }; /bin/bash -c id").is_some());
        assert!(header_value("${jndi:ldap://x/a}").is_some());
        assert!(header_value("${${lower:j}ndi:x}").is_some());
        assert!(header_value("text/html; q=0.9").is_none());
    }
}
