"""The whole-word tokens every line a query selects must hold: what lets the store skip
blocks whose token filter lacks one (`sluiceway.model.ReadHints.tokens`).

Tokens follow `sluiceway.model.words` (runs of ASCII `[A-Za-z0-9_]`, lower-cased). A line
filter `|= "text"` requires the tokens lying *fully inside* the text — bounded inside it
by a non-word character on both sides — because the text may sit inside longer words
of the line (`|= "rror: disk"` matches `error: disk`, whose token is `error`). `|~` needs
a regex whose every match contains such a run (`\\b`, `^` and `$` bound a word too:
`|~ "\\bqz7kv93xw\\b"` requires `qz7kv93xw`); `|>` the tokens inside its literals; a
filter with several values (`or`) those every value requires. `| json | name="value"`
and `| logfmt | name="value"` require every token of `value` (the parsers hand out values
as the line has them, JSON-unescaped, which the store indexes too) unless `name` is a
stream label of the series (`BlockNeeds.tokens_for`), as structured metadata values are
indexed as well. Only stages that read the original line and labels whose values come
from it count: the walk stops at the first stage that rewrites the line or makes labels
from elsewhere (`line_format`, `label_format`, `unpack`, `regexp`, `pattern`, `decolorize`,
a parser with parameters). Anything not understood requires nothing: a requirement left
out only costs reading a block, one too many would lose lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sluiceway.logql import _ast as A
from sluiceway.logql._levels import DETECTED_LEVEL
from sluiceway.logql._pattern import compile_pattern
from sluiceway.model import ReadHints, is_word_byte, words

Tokens = frozenset[bytes]
_NONE: Tokens = frozenset()


@dataclass(frozen=True, slots=True)
class BlockNeeds:
    """`tokens`: required of every selected line; `fields`: (label name, tokens) required
    unless the series has a stream label of that name."""

    tokens: Tokens = _NONE
    fields: tuple[tuple[str, Tokens], ...] = ()
    _cache: dict[frozenset[str], Tokens] = field(default_factory=dict, compare=False,
                                                   repr=False)

    def __bool__(self) -> bool:
        return bool(self.tokens or self.fields)

    def tokens_for(self, labels: frozenset[str] | set[str] | dict[str, str]) -> Tokens:
        """The tokens required of the lines of a series with these stream label names."""
        if not self.fields:
            return self.tokens
        names = frozenset(labels)
        out = self._cache.get(names)
        if out is None:
            out = self.tokens.union(*(t for name, t in self.fields if name not in names))
            self._cache[names] = out
        return out

    def hints(self, labels: dict[str, str], summary_grid: int = 0,
              label_key: str = "") -> ReadHints | None:
        """Read hints for one series (None when there is nothing to hint)."""
        tokens = self.tokens_for(labels)
        if not tokens and not summary_grid:
            return None
        return ReadHints(tokens, summary_grid, label_key)


NOTHING = BlockNeeds()


# The same stages (one query's) make a pipeline per work unit: keyed by identity, since
# hashing a long `and` chain would recurse as deep as it is long.
_MEMO: dict[int, tuple[tuple[A.Stage, ...], BlockNeeds]] = {}


def block_needs(stages: tuple[A.Stage, ...]) -> BlockNeeds:
    """What a pipeline's stages require of every line they keep (see the module)."""
    hit = _MEMO.get(id(stages))
    if hit is not None and hit[0] is stages:
        return hit[1]
    out = _needs(stages)
    if len(_MEMO) > 256:
        _MEMO.clear()
    _MEMO[id(stages)] = (stages, out)
    return out


def _needs(stages: tuple[A.Stage, ...]) -> BlockNeeds:
    tokens: set[bytes] = set()
    fields: dict[str, set[bytes]] = {}
    line_ok = labels_ok = True
    for st in stages:
        if not (line_ok or labels_ok):
            break
        if isinstance(st, A.LineFilter):
            if line_ok:
                tokens |= filter_tokens(st)
        elif isinstance(st, A.LabelFilter):
            if labels_ok:
                for name, value in _equalities(st.expr):
                    fields.setdefault(name, set()).update(words(value.encode()))
        elif isinstance(st, A.JsonParser | A.LogfmtParser):
            labels_ok = labels_ok and not st.params
        elif isinstance(st, A.RegexpParser | A.PatternParser | A.LabelFormat):
            labels_ok = False
        elif isinstance(st, A.LineFormat | A.Decolorize):
            line_ok = False
        elif isinstance(st, A.Drop | A.Keep):
            pass  # a dropped label fails every filter on it: nothing more is kept
        else:  # unpack, and any stage added later: both line and labels may change
            break
    return BlockNeeds(frozenset(tokens),
                      tuple(sorted((n, frozenset(t)) for n, t in fields.items() if t)))


def _equalities(e: A.LabelFilterExpr) -> list[tuple[str, str]]:
    """`name="value"` string comparisons every passing line satisfies (top-level `and`s),
    on labels a line's own text or metadata supplies."""
    out: list[tuple[str, str]] = []
    pending: list[A.LabelFilterExpr] = [e]
    while pending:
        x = pending.pop()
        if isinstance(x, A.LabelBinary):
            if x.op == "and":
                pending += [x.left, x.right]
        elif x.kind == "string" and x.op == "=" and not x.name.startswith("__") \
                and x.name != DETECTED_LEVEL:
            out.append((x.name, x.raw))
    return out


def filter_tokens(f: A.LineFilter) -> Tokens:
    """Tokens every line passing the line filter holds."""
    if f.op[0] == "!" or f.ip or not f.values:
        return _NONE
    per_value = [_value_tokens(f.op[1], v) for v in f.values]
    out = per_value[0]
    for t in per_value[1:]:
        out &= t
    return out


def _value_tokens(kind: str, value: str) -> Tokens:
    if kind == "=":
        return literal_tokens(value)
    if kind == "~":
        return regex_tokens(value)
    try:
        literals = compile_pattern(value, need_capture=False).literals
    except ValueError:
        return _NONE
    return frozenset().union(*(literal_tokens(lit) for lit in literals if lit))


def literal_tokens(text: str) -> Tokens:
    """Tokens lying fully inside `text` (a substring of a line)."""
    return _run_tokens([_char(c, False) for c in text])


# --- regular expressions ------------------------------------------------------------
# A regex is read (RE2 syntax) into a sequence of units, each one of:
#   a character (`str`), WORD (one or more word characters, which ones unknown), SEP (one
#   or more non-word characters), EDGE (a zero-width word edge: `\b`, `^`, `$`, `\A`, `\z`)
#   or ANY (anything, possibly nothing). A run of word characters between a SEP, EDGE or
#   non-word character on each side is a token every match holds.
WORD, SEP, EDGE, ANY = "<word>", "<sep>", "<edge>", "<any>"
# With (?i), RE2 lets these match non-ASCII letters (K: KELVIN SIGN, S: LONG S; I kept
# out of caution): word or not, nobody knows.
_FOLDS_OUTSIDE_ASCII = set("kKsSiI\u212a\u017f\u0130\u0131")


class _GiveUp(Exception):
    pass


def regex_tokens(rx: str) -> Tokens:
    """Tokens every match of `rx` holds (none when unsure)."""
    try:
        return _Regex(rx).tokens()
    except (_GiveUp, IndexError, ValueError):
        return _NONE


def _char(c: str, caseless: bool) -> str:
    if caseless and c in _FOLDS_OUTSIDE_ASCII:
        return ANY
    return c


def _is_word(u: str) -> bool:
    return len(u) == 1 and ord(u) < 128 and is_word_byte(ord(u))


def _bounds(u: str) -> bool:
    """Whether unit `u` next to a word character ends that word there."""
    return u in (SEP, EDGE) or (len(u) == 1 and not _is_word(u))


def _run_tokens(units: list[str]) -> Tokens:
    out: set[bytes] = set()
    i, n = 0, len(units)
    while i < n:
        if not _is_word(units[i]):
            i += 1
            continue
        j = i
        while j < n and _is_word(units[j]):
            j += 1
        if i > 0 and j < n and _bounds(units[i - 1]) and _bounds(units[j]):
            out.add("".join(units[i:j]).lower().encode())
        i = j
    return frozenset(out)


_POSIX_WORD = {"alpha", "digit", "alnum", "word", "upper", "lower", "xdigit"}
_POSIX_SEP = {"space", "blank", "cntrl"}
_ESCAPED_SEP = {"a": "\a", "f": "\f", "t": "\t", "n": "\n", "r": "\r", "v": "\v"}


class _Regex:
    def __init__(self, rx: str) -> None:
        self.rx = rx
        self.i = 0
        # Case folding anywhere: every ambiguous letter is unknown everywhere.
        self.caseless = any(
            "i" in rx[k + 2:].split(")", 1)[0].split(":", 1)[0]
            for k in range(len(rx)) if rx.startswith("(?", k))

    def tokens(self) -> Tokens:
        branches, inner = self._alternation()
        if self.i != len(self.rx):
            raise _GiveUp
        return _branches_tokens(branches, inner)

    def _alternation(self) -> tuple[list[list[str]], list[Tokens]]:
        """Branches (unit sequences) up to a `)` or the end, with the tokens each
        branch's inner groups require (one set per branch)."""
        branches: list[list[str]] = []
        inner: list[Tokens] = []
        while True:
            seq, req = self._sequence()
            branches.append(seq)
            inner.append(req)
            if self.i < len(self.rx) and self.rx[self.i] == "|":
                self.i += 1
                continue
            return branches, inner

    def _sequence(self) -> tuple[list[str], Tokens]:
        units: list[str] = []
        req: set[bytes] = set()
        rx = self.rx
        while self.i < len(rx) and rx[self.i] not in "|)":
            atom, atom_req, inline = self._atom()
            lo, hi = self._quantifier()
            if lo >= 1:
                req |= atom_req
            if inline is not None and (lo, hi) == (1, 1):
                units += inline
            elif lo == 0:
                units.append(ANY)
            elif atom in (SEP, WORD) or (len(atom) == 1 and atom != ANY):
                units.append(atom if atom in (SEP, WORD) else
                             SEP if not _is_word(atom) else WORD if (lo, hi) != (1, 1)
                             else atom)
            elif atom == EDGE:
                units.append(EDGE)
            else:
                units.append(ANY)
        return units, frozenset(req)

    def _quantifier(self) -> tuple[int, int]:
        rx, i = self.rx, self.i
        if i >= len(rx):
            return 1, 1
        c = rx[i]
        lo, hi = 1, 1
        if c in "*+?":
            lo, hi = {"*": (0, -1), "+": (1, -1), "?": (0, 1)}[c]
            self.i += 1
        elif c == "{":
            close = rx.find("}", i)
            body = rx[i + 1:close] if close > 0 else ""
            parts = body.split(",")
            if close < 0 or not parts[0].isdigit() or len(parts) > 2 or (
                    len(parts) == 2 and parts[1] and not parts[1].isdigit()):
                return 1, 1  # not a repetition: `{` is a literal, read by the next atom
            lo = int(parts[0])
            hi = lo if len(parts) == 1 else (int(parts[1]) if parts[1] else -1)
            self.i = close + 1
        else:
            return 1, 1
        if self.i < len(rx) and rx[self.i] == "?":  # lazy
            self.i += 1
        if self.i < len(rx) and rx[self.i] in "*+?{":
            raise _GiveUp  # RE2 refuses a repeated repetition; so do we
        return lo, hi

    def _atom(self) -> tuple[str, Tokens, list[str] | None]:
        """(unit, tokens it requires, units to inline for an unrepeated group)."""
        rx = self.rx
        c = rx[self.i]
        if c == "(":
            return self._group()
        if c == "[":
            return self._class(), _NONE, None
        if c == "\\":
            return self._escape()
        self.i += 1
        if c in "^$":
            return EDGE, _NONE, None
        if c == ".":
            return ANY, _NONE, None
        if c in "*+?":
            raise _GiveUp
        return _char(c, self.caseless), _NONE, None

    def _group(self) -> tuple[str, Tokens, list[str] | None]:
        rx = self.rx
        self.i += 1
        if rx.startswith("?", self.i):
            head = rx[self.i + 1:]
            if head.startswith(("P<", "<")):
                close = rx.index(">", self.i)
                self.i = close + 1
            else:
                k = self.i + 1
                while k < len(rx) and (rx[k].isalpha() or rx[k] == "-"):
                    k += 1
                if k >= len(rx) or rx[k] not in ":)":
                    raise _GiveUp
                self.i = k + 1
                if rx[k] == ")":  # flags for the rest (case folding: see __init__)
                    return "", _NONE, []
        branches, inner = self._alternation()
        if self.i >= len(rx) or rx[self.i] != ")":
            raise _GiveUp
        self.i += 1
        if len(branches) == 1:
            return ANY, inner[0] | _run_tokens([ANY, *branches[0], ANY]), branches[0]
        return ANY, _branches_tokens(branches, inner), None

    def _escape(self) -> tuple[str, Tokens, list[str] | None]:
        rx = self.rx
        c = rx[self.i + 1]
        self.i += 2
        if c in "bAz":
            return EDGE, _NONE, None
        if c == "B":
            return "", _NONE, []  # zero width, no characters
        if c in "dw":
            return WORD, _NONE, None
        if c in "Ws":
            return SEP, _NONE, None
        if c in "DSC":
            return ANY, _NONE, None
        if c in "pP":
            if rx[self.i] == "{":
                self.i = rx.index("}", self.i) + 1
            else:
                self.i += 1
            return ANY, _NONE, None
        if c == "Q":
            end = rx.find("\\E", self.i)
            text = rx[self.i:] if end < 0 else rx[self.i:end]
            self.i = len(rx) if end < 0 else end + 2
            return ANY, _NONE, [_char(ch, self.caseless) for ch in text]
        if c == "x":
            if rx[self.i] == "{":
                close = rx.index("}", self.i)
                code = int(rx[self.i + 1:close], 16)
                self.i = close + 1
            else:
                code = int(rx[self.i:self.i + 2], 16)
                self.i += 2
            return _char(chr(code), self.caseless), _NONE, None
        if c == "0":  # octal: \0, \0N, \0NN
            k = self.i
            while k < len(rx) and k < self.i + 2 and rx[k] in "01234567":
                k += 1
            code = int("0" + rx[self.i:k], 8)
            self.i = k
            return _char(chr(code), self.caseless), _NONE, None
        if c in _ESCAPED_SEP:
            return _ESCAPED_SEP[c], _NONE, None
        if c.isascii() and c.isalnum():
            raise _GiveUp  # an escape we do not know
        return _char(c, self.caseless), _NONE, None

    def _class(self) -> str:
        """A bracketed class as one unit: SEP, WORD, a single character, or ANY."""
        rx = self.rx
        i = self.i + 1
        negated = rx.startswith("^", i)
        if negated:
            i += 1
        chars: set[str] = set()
        kinds: set[str] = set()  # "word", "sep", "any" for what cannot be listed
        every_word = False  # \w or [:word:]: every word character is in the set
        first = True
        while True:
            if i >= len(rx):
                raise _GiveUp
            c = rx[i]
            if c == "]" and not first:
                i += 1
                break
            first = False
            if rx.startswith("[:", i):
                close = rx.index(":]", i)
                name = rx[i + 2:close]
                every_word = every_word or name == "word"
                kinds.add("any" if name.startswith("^") else "word" if name in _POSIX_WORD
                          else "sep" if name in _POSIX_SEP else "any")
                i = close + 2
                continue
            if c == "\\":
                e = rx[i + 1]
                i += 2
                if e in "dw":
                    kinds.add("word")
                    every_word = every_word or e == "w"
                elif e in "sW":
                    kinds.add("sep")
                elif e in "pP":
                    i = rx.index("}", i) + 1 if rx.startswith("{", i) else i + 1
                    kinds.add("any")
                elif e == "x":
                    i = rx.index("}", i) + 1 if rx.startswith("{", i) else i + 2
                    kinds.add("any")  # rare in classes: not worth decoding
                elif e in _ESCAPED_SEP:
                    chars.add(_ESCAPED_SEP[e])
                elif e.isascii() and e.isalnum():
                    kinds.add("any")  # \D, \S, \C, octal...
                else:
                    chars.add(e)
                continue
            if rx.startswith("-", i + 1) and i + 2 < len(rx) and rx[i + 2] != "]":
                hi = rx[i + 2]
                if hi == "\\" or ord(hi) < ord(c) or ord(hi) - ord(c) > 512:
                    raise _GiveUp  # an escaped or odd range: not worth the risk
                chars.update(chr(k) for k in range(ord(c), ord(hi) + 1))
                i += 3
                continue
            chars.add(c)
            i += 1
        self.i = i
        if negated:
            # Every word character in the set: only non-word ones are left to match.
            if every_word or all(chr(b) in chars for b in range(128) if is_word_byte(b)):
                return SEP
            return ANY
        if self.caseless and chars & _FOLDS_OUTSIDE_ASCII:
            kinds.add("any")
        if "any" in kinds:
            return ANY
        if not kinds and len(chars) == 1:  # `[.]`: one character
            return next(iter(chars))
        if any(_is_word(c) for c in chars):
            kinds.add("word")
        if any(not _is_word(c) for c in chars):
            kinds.add("sep")
        if kinds == {"word"}:
            return WORD
        if kinds == {"sep"}:
            return SEP
        return ANY


def _branches_tokens(branches: list[list[str]], inner: list[Tokens]) -> Tokens:
    """Tokens every branch requires (its own runs, edges unknown, and its groups')."""
    out: Tokens | None = None
    for seq, req in zip(branches, inner, strict=True):
        t = req | _run_tokens([ANY, *seq, ANY])
        out = t if out is None else out & t
    return out or _NONE
