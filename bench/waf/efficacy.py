#!/usr/bin/env python3
"""Measure a WAF's detection rate and false-positive rate over HTTP.

Usage::

    python3 bench/waf/efficacy.py --url http://127.0.0.1:8080 --corpus target/waf-corpus [--json]

The corpus is the directory written by ``corpus.py`` (``attack/<category>.txt``,
``benign.txt``, ``manifest.json``).  Every value is sent in several
placements:

* attacks (sqli, xss, cmdi) and benign values:
    - ``query``: ``GET /search?q=<percent-encoded value>``
    - ``form``:  ``POST /submit`` (application/x-www-form-urlencoded),
      the value in the ``comment`` field next to two ordinary fields
    - ``json``:  ``POST /api/comments`` (application/json),
      ``{"id": 42, "comment": "<value>"}``
* traversal payloads (stored in wire form):
    - ``path``:  ``GET /files/<payload>``, sent as-is on the socket
    - ``query``: ``GET /download?file=<payload>`` (only '&', '+' and '#'
      are additionally escaped so the payload stays one parameter)
* benign only, in addition:
    - ``form-doc`` / ``json-doc``: a realistic multi-field form / JSON
      document built from 5 consecutive benign values
    - ``path``: ``GET /files/<value>`` for values that look like file names

A request counts as *blocked* if the status is 403.  For attacks anything
else is a miss; for benign traffic a 403 is a false positive.  Statuses that
suggest a broken request or server (400, 408, 411, 413, 414, 431, any 5xx)
and connection errors / time-outs are counted and listed as *errors* (for an
attack they also count as missed).

Output: a table on stdout (on stderr with ``--json``, which prints one JSON
document on stdout).  Exit status is 0 whatever the numbers are; 2 if the
server cannot be reached.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import socket
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

ATTACK_CATEGORIES = ("sqli", "xss", "traversal", "cmdi")
ERROR_STATUSES = {400, 408, 411, 413, 414, 431}
FILE_NAME_RE = re.compile(r"\A[\w][\w .()/-]*\.[A-Za-z0-9]{2,5}\Z")


# ---------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------

def read_corpus_file(path: Path) -> list[str]:
    """'#' lines are comments, every other non-empty line is a JSON string."""
    values = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            try:
                values.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SystemExit("%s:%d: not a JSON string: %s" % (path, lineno, exc))
    return values


# ---------------------------------------------------------------------------
# Request building
# ---------------------------------------------------------------------------

class Req:
    """One HTTP request plus what it tests."""

    __slots__ = ("kind", "category", "placement", "index", "method", "target", "ctype", "body")

    def __init__(self, kind, category, placement, index, method, target, ctype=None, body=None):
        self.kind = kind            # "attack" | "benign"
        self.category = category    # sqli/xss/traversal/cmdi/benign
        self.placement = placement  # query/form/json/path/form-doc/json-doc
        self.index = index          # payload index (benign docs: first value's index)
        self.method = method
        self.target = target        # request target, already encoded
        self.ctype = ctype
        self.body = body


def enc_query(value: str) -> str:
    return quote(value.encode("utf-8"), safe="")


def wire_query(payload: str) -> str:
    """Keep a wire-form payload's own encoding; escape only what would split
    the parameter or start a fragment."""
    return payload.replace("&", "%26").replace("+", "%2B").replace("#", "%23")


def value_requests(kind, category, index, value, prefix):
    yield Req(kind, category, "query", index, "GET", prefix + "/search?q=" + enc_query(value))
    form = urlencode([("title", "Feedback"), ("comment", value), ("submit", "Send")])
    yield Req(kind, category, "form", index, "POST", prefix + "/submit",
              "application/x-www-form-urlencoded", form.encode("ascii"))
    doc = json.dumps({"id": 42, "comment": value}, ensure_ascii=False)
    yield Req(kind, category, "json", index, "POST", prefix + "/api/comments",
              "application/json", doc.encode("utf-8"))


def traversal_requests(index, payload, prefix):
    safe = "".join(c if 0x20 < ord(c) < 0x7F else quote(c.encode("utf-8"), safe="")
                   for c in payload)  # corpus.py already did this; stay safe
    yield Req("attack", "traversal", "path", index, "GET", prefix + "/files/" + safe)
    yield Req("attack", "traversal", "query", index, "GET",
              prefix + "/download?file=" + wire_query(safe))


def benign_doc_requests(values, prefix):
    """Multi-field documents: a profile/contact form built from 5 values."""
    for start in range(0, len(values) - 4, 5):
        v = values[start:start + 5]
        fields = [("name", v[0]), ("email", v[1]), ("address", v[2]), ("subject", v[3]),
                  ("message", v[4]), ("newsletter", "on")]
        yield Req("benign", "benign", "form-doc", start, "POST", prefix + "/contact",
                  "application/x-www-form-urlencoded", urlencode(fields).encode("ascii"))
        doc = {"user": {"name": v[0], "email": v[1]},
               "shipping": {"address": v[2], "country": "US"},
               "note": v[3], "items": [{"sku": "A-1001", "qty": 2, "comment": v[4]}],
               "gift": False, "total": 59.9}
        yield Req("benign", "benign", "json-doc", start, "POST", prefix + "/api/orders",
                  "application/json", json.dumps(doc, ensure_ascii=False).encode("utf-8"))


def build_requests(attacks: dict, benign: list[str], prefix: str) -> list[Req]:
    reqs = []
    for cat, payloads in attacks.items():
        for i, p in enumerate(payloads):
            if cat == "traversal":
                reqs.extend(traversal_requests(i, p, prefix))
            else:
                reqs.extend(value_requests("attack", cat, i, p, prefix))
    for i, v in enumerate(benign):
        reqs.extend(value_requests("benign", "benign", i, v, prefix))
        if FILE_NAME_RE.match(v):
            reqs.append(Req("benign", "benign", "path", i, "GET",
                            prefix + "/files/" + quote(v.encode("utf-8"), safe="/")))
    reqs.extend(benign_doc_requests(benign, prefix))
    return reqs


# ---------------------------------------------------------------------------
# Sending
# ---------------------------------------------------------------------------

class Sender:
    """Thread-pool HTTP/1.1 client with one keep-alive connection per thread."""

    def __init__(self, host: str, port: int, host_header: str, timeout: float):
        self.host, self.port, self.host_header, self.timeout = host, port, host_header, timeout
        self.local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            conn.close()
        self.local.conn = None

    def send(self, req: Req):
        """Return the status code (int) or an error string."""
        for attempt in (1, 2):
            conn = self._conn()
            try:
                conn.putrequest(req.method, req.target, skip_host=True, skip_accept_encoding=True)
                conn.putheader("Host", self.host_header)
                conn.putheader("User-Agent", "gatehouse-waf-efficacy/1")
                conn.putheader("Accept", "*/*")
                if req.body is not None:
                    conn.putheader("Content-Type", req.ctype)
                    conn.putheader("Content-Length", str(len(req.body)))
                conn.endheaders(req.body)
                resp = conn.getresponse()
                resp.read()
                if resp.will_close:
                    self._drop()
                return resp.status
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                # A keep-alive connection closed by the server between two
                # requests: retry once on a fresh connection.
                self._drop()
                if attempt == 2:
                    return "conn:" + type(exc).__name__
            except socket.timeout:
                self._drop()
                return "timeout"
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                return "conn:" + type(exc).__name__
        return "conn:unknown"


def is_error(status) -> bool:
    return isinstance(status, str) or status in ERROR_STATUSES or status >= 500


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def show(value: str, width: int = 120) -> str:
    """Printable, escaped, truncated payload."""
    names = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    text = "".join(names.get(c) or ("\\x%02x" % ord(c) if ord(c) < 0x20 or ord(c) == 0x7F else c)
                   for c in value)
    return text if len(text) <= width else text[:width - 3] + "..."


def pct(n: int, d: int) -> float:
    return round(100.0 * n / d, 2) if d else 0.0


def analyse(reqs, statuses, attacks, benign, sources, examples_missed, examples_fp):
    result = {"categories": {}, "benign": {}}
    per = defaultdict(list)
    for req, st in zip(reqs, statuses):
        per[req.category].append((req, st))

    for cat in attacks:
        rows = per.get(cat, [])
        blocked = sum(1 for _, st in rows if st == 403)
        by_place = defaultdict(lambda: [0, 0])
        missed_by_payload = defaultdict(list)
        errors = Counter()
        status_hist = Counter()
        by_source = defaultdict(lambda: [0, 0])
        for req, st in rows:
            by_place[req.placement][0] += 1
            status_hist[str(st)] += 1
            srcs = sources.get(cat) or []
            src = srcs[req.index] if req.index < len(srcs) else None
            if src:
                by_source[src][0] += 1
            if st == 403:
                by_place[req.placement][1] += 1
                if src:
                    by_source[src][1] += 1
            else:
                missed_by_payload[req.index].append("%s:%s" % (req.placement, st))
            if is_error(st):
                errors[str(st)] += 1
        payloads_fully = sum(1 for i in range(len(attacks[cat])) if i not in missed_by_payload)
        missed = [{"payload": attacks[cat][i], "missed_in": places}
                  for i, places in sorted(missed_by_payload.items())[:examples_missed]]
        result["categories"][cat] = {
            "payloads": len(attacks[cat]),
            "requests": len(rows),
            "blocked": blocked,
            "detection_pct": pct(blocked, len(rows)),
            "payloads_blocked_everywhere": payloads_fully,
            "payloads_missed_somewhere": len(missed_by_payload),
            "by_placement": {p: {"requests": n, "blocked": b, "detection_pct": pct(b, n)}
                             for p, (n, b) in sorted(by_place.items())},
            "by_source": {s: {"requests": n, "blocked": b, "detection_pct": pct(b, n)}
                          for s, (n, b) in sorted(by_source.items())},
            "errors": sum(errors.values()),
            "error_statuses": dict(errors),
            "statuses": dict(status_hist),
            "missed_examples": missed,
        }

    rows = per.get("benign", [])
    fps = [(req, st) for req, st in rows if st == 403]
    errors = Counter(str(st) for _, st in rows if is_error(st))
    by_place = defaultdict(lambda: [0, 0])
    for req, st in rows:
        by_place[req.placement][0] += 1
        if st == 403:
            by_place[req.placement][1] += 1
    fp_by_value: dict[str, list[str]] = {}   # value -> placements (insertion ordered)
    for req, _ in fps:
        if req.placement.endswith("-doc"):
            value = " | ".join(benign[req.index:req.index + 5])
        else:
            value = benign[req.index]
        fp_by_value.setdefault(value, []).append(req.placement)
    fp_examples = [{"value": v, "placements": pl}
                   for v, pl in list(fp_by_value.items())[:examples_fp]]
    result["benign"] = {
        "values": len(benign),
        "requests": len(rows),
        "false_positives": len(fps),
        "fp_pct": pct(len(fps), len(rows)),
        "by_placement": {p: {"requests": n, "false_positives": f, "fp_pct": pct(f, n)}
                         for p, (n, f) in sorted(by_place.items())},
        "errors": sum(errors.values()),
        "error_statuses": dict(errors),
        "statuses": dict(Counter(str(st) for _, st in rows)),
        "fp_distinct_values": len(fp_by_value),
        "fp_examples": fp_examples,
    }
    return result


def print_report(res: dict, out) -> None:
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p("WAF efficacy against %s  (corpus %s, %d requests in %.1f s)"
      % (res["url"], res["corpus"], res["requests_total"], res["elapsed_s"]))
    p("")
    p("%-10s %9s %9s %9s %10s %8s   %s" % ("category", "payloads", "requests", "blocked",
                                          "detection", "errors", "per placement"))
    for cat, c in res["categories"].items():
        places = "  ".join("%s %.1f%%" % (k, v["detection_pct"]) for k, v in c["by_placement"].items())
        p("%-10s %9d %9d %9d %9.2f%% %8d   %s" % (cat, c["payloads"], c["requests"], c["blocked"],
                                                  c["detection_pct"], c["errors"], places))
    b = res["benign"]
    p("")
    p("%-10s %9s %9s %9s %10s %8s" % ("benign", "values", "requests", "false pos", "FP rate", "errors"))
    p("%-10s %9d %9d %9d %9.3f%% %8d   %s" % (
        "", b["values"], b["requests"], b["false_positives"], b["fp_pct"], b["errors"],
        "  ".join("%s %d" % (k, v["false_positives"]) for k, v in b["by_placement"].items())))

    p("")
    p("Detection by corpus source:")
    for cat, c in res["categories"].items():
        for src, s in c["by_source"].items():
            p("  %-10s %-42s %7d req  %7.2f%%" % (cat, src, s["requests"], s["detection_pct"]))

    errs = [(cat, c["error_statuses"]) for cat, c in res["categories"].items() if c["errors"]]
    if b["errors"]:
        errs.append(("benign", b["error_statuses"]))
    p("")
    if errs:
        p("ERRORS (odd statuses / connection problems, attacks among them count as missed):")
        for cat, e in errs:
            p("  %-10s %s" % (cat, ", ".join("%s x%d" % kv for kv in sorted(e.items()))))
    else:
        p("Errors: none")

    for cat, c in res["categories"].items():
        if not c["missed_examples"]:
            continue
        p("")
        p("Missed %s (%d of %d payloads missed in at least one placement; first %d):"
          % (cat, c["payloads_missed_somewhere"], c["payloads"], len(c["missed_examples"])))
        for m in c["missed_examples"]:
            p("  [%s] %s" % (",".join(m["missed_in"]), show(m["payload"])))
    if b["fp_examples"]:
        p("")
        p("False positives (%d distinct values/documents; first %d):"
          % (b["fp_distinct_values"], len(b["fp_examples"])))
        for f in b["fp_examples"]:
            p("  [%s] %s" % (",".join(f["placements"]), show(f["value"])))


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="base URL of the proxy, e.g. http://127.0.0.1:8080")
    ap.add_argument("--corpus", required=True, help="directory written by corpus.py")
    ap.add_argument("--json", action="store_true",
                    help="print a JSON document on stdout (the table goes to stderr)")
    ap.add_argument("--threads", type=int, default=8, help="concurrent connections (default 8)")
    ap.add_argument("--timeout", type=float, default=5.0, help="per-request timeout, s (default 5)")
    ap.add_argument("--host-header", default=None, help="Host header (default: from --url)")
    ap.add_argument("--categories", default=",".join(ATTACK_CATEGORIES),
                    help="attack categories to run (default: all)")
    ap.add_argument("--limit", type=int, default=0,
                    help="quick run: N evenly spaced payloads per category and N benign values")
    ap.add_argument("--no-benign", action="store_true", help="skip the benign corpus")
    ap.add_argument("--examples-missed", type=int, default=10, help="missed examples per category")
    ap.add_argument("--examples-fp", type=int, default=20, help="false-positive examples")
    args = ap.parse_args(argv)

    url = urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        raise SystemExit("--url must be http://HOST:PORT[/prefix]")
    port = url.port or 80
    prefix = url.path.rstrip("/")
    host_header = args.host_header or url.netloc

    corpus = Path(args.corpus)
    attacks = {}
    for cat in [c.strip() for c in args.categories.split(",") if c.strip()]:
        path = corpus / "attack" / ("%s.txt" % cat)
        if not path.exists():
            raise SystemExit("missing %s (run corpus.py first)" % path)
        attacks[cat] = read_corpus_file(path)
    benign = [] if args.no_benign else read_corpus_file(corpus / "benign.txt")
    sources = {}
    manifest = corpus / "manifest.json"
    if manifest.exists():
        m = json.loads(manifest.read_text(encoding="utf-8"))
        sources = {k: v for k, v in m.get("payload_sources", {}).items()
                   if k in attacks and len(v) == len(attacks[k])}
    if args.limit:
        # Evenly spaced sample, so every source of a category is represented.
        def pick(n_total):
            step = max(1, n_total // args.limit)
            return list(range(0, n_total, step))[:args.limit]
        for cat in list(attacks):
            idx = pick(len(attacks[cat]))
            attacks[cat] = [attacks[cat][i] for i in idx]
            if cat in sources:
                sources[cat] = [sources[cat][i] for i in idx]
        benign = [benign[i] for i in pick(len(benign))]

    sender = Sender(url.hostname, port, host_header, args.timeout)
    probe = sender.send(Req("benign", "benign", "probe", 0, "GET", prefix + "/"))
    if isinstance(probe, str):
        print("server unreachable at %s: %s" % (args.url, probe), file=sys.stderr)
        return 2

    reqs = build_requests(attacks, benign, prefix)
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        statuses = list(pool.map(sender.send, reqs, chunksize=64))
    elapsed = time.monotonic() - start

    res = analyse(reqs, statuses, attacks, benign, sources, args.examples_missed, args.examples_fp)
    res.update({"url": args.url, "corpus": str(corpus), "requests_total": len(reqs),
                "elapsed_s": round(elapsed, 2)})
    conn_errors = sum(1 for st in statuses if isinstance(st, str) and st.startswith("conn:"))
    print_report(res, sys.stderr if args.json else sys.stdout)
    if args.json:
        json.dump(res, sys.stdout, indent=1, ensure_ascii=False)
        print()
    if reqs and conn_errors == len(reqs):
        print("server became unreachable: every request failed", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # e.g. piped into head
        sys.exit(0)
