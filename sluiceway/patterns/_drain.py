"""Drain (He et al., ICWS 2017): online log template mining with a fixed-depth prefix tree,
with the parameters and rules of Loki's pattern ingester.

A line's tokens go down the tree by their count, then by their first tokens (a token with
digits takes the `<_>` branch); the leaf holds candidate clusters, and the line joins the
most similar one (share of equal tokens >= `sim_th`, ties to the one with more
placeholders), whose differing tokens become `<_>`; otherwise it starts a cluster. At
most `max_clusters` clusters are kept (least recently used go first); when more than
`max_eviction_ratio` of the clusters made since the last reset were evicted, the
stream's lines are not mined for ten minutes (the stream has no stable patterns).
"""

from __future__ import annotations

import re
import time
import unicodedata
from array import array
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from sluiceway.patterns._config import PatternIngesterConfig
from sluiceway.patterns._tokenize import PARAM, Tokenizer, dedupe_params

MIN_TOKENS, MAX_TOKENS = 4, 80
_THROTTLE_S = 600.0


# Loki's fixed Drain parameters: the tree depth (the token count level, then depth - 2
# token levels), the similarity a line needs to join a cluster, children per node.
DEPTH, SIM_TH, MAX_CHILDREN = 30, 0.3, 15


@dataclass(slots=True)
class Cluster:
    id: int
    tokens: list[str]
    state: list[int] | None
    # Lines per sample interval: bucket start (Unix ms) and count, ascending.
    buckets: array[int] = field(default_factory=lambda: array("q"))
    counts: array[int] = field(default_factory=lambda: array("q"))

    def add(self, ts_ms: int, interval_ms: int) -> None:
        t = ts_ms - ts_ms % interval_ms
        if self.buckets and self.buckets[-1] == t:
            self.counts[-1] += 1
        elif not self.buckets or t > self.buckets[-1]:
            self.buckets.append(t)
            self.counts.append(1)
        # an older bucket: the stream only feeds lines in time order, so never

    def prune(self, before_ms: int) -> None:
        """Forget samples of buckets that start before `before_ms`."""
        k = 0
        while k < len(self.buckets) and self.buckets[k] < before_ms:
            k += 1
        if k:
            del self.buckets[:k]
            del self.counts[:k]


class _Node:
    __slots__ = ("children", "clusters")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.clusters: list[int] = []


_ASCII_DIGIT = re.compile("[0-9]")


def _has_digit(token: str) -> bool:
    """Holds a number (Unicode's N categories): such a token takes the `<_>` branch."""
    if token.isascii():
        return _ASCII_DIGIT.search(token) is not None
    return any(unicodedata.category(c)[0] == "N" for c in token)


class Drain:
    def __init__(self, cfg: PatternIngesterConfig, tokenizer: Tokenizer,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`cfg`: `max_clusters`, `max_eviction_ratio`, `pattern_sample_interval`."""
        self.cfg = cfg
        self.sample_interval_ms = cfg.sample_interval_ms()
        self.tokenizer = tokenizer
        self.clock = clock
        self.max_node_depth = DEPTH - 2
        self.root = _Node()
        self.clusters: OrderedDict[int, Cluster] = OrderedDict()  # oldest use first
        self._next_id = 0
        self._added = 0
        self._evicted = 0
        self._blocked_until = 0.0

    # -- the limiter ------------------------------------------------------------------

    def _allow(self) -> bool:
        if self._blocked_until:
            if self.clock() < self._blocked_until:
                return False
            self._added = self._evicted = 0
            self._blocked_until = 0.0
        if self._added and self._evicted / self._added > self.cfg.max_eviction_ratio:
            self._blocked_until = self.clock() + _THROTTLE_S
            return False
        self._added += 1
        return True

    # -- training ---------------------------------------------------------------------

    def train(self, line: str, ts_ms: int) -> str:
        """Mine one line; returns '' when it joined or made a cluster, else why not."""
        if not self._allow():
            return "throttled"
        got = self.tokenizer.tokenize(line)
        if got is None:
            return "not_tokenized"
        tokens, state = got
        if len(tokens) < MIN_TOKENS:
            return "too_few_tokens"
        if len(tokens) > MAX_TOKENS:
            return "too_many_tokens"
        match = self._search(tokens)
        if match is None:
            self._next_id += 1
            match = Cluster(self._next_id, list(tokens), None if state is None else list(state))
            self.clusters[match.id] = match
            if len(self.clusters) > self.cfg.max_clusters:
                self.clusters.popitem(last=False)
                self._evicted += 1
            self._add_to_tree(match)
        else:
            t = match.tokens
            for i, tok in enumerate(tokens):
                if tok != t[i]:
                    t[i] = PARAM
            self.clusters.move_to_end(match.id)
        match.add(ts_ms, self.sample_interval_ms)
        return ""

    def _get(self, cid: int) -> Cluster | None:
        c = self.clusters.get(cid)
        if c is not None:
            self.clusters.move_to_end(cid)
        return c

    def _search(self, tokens: list[str]) -> Cluster | None:
        n = len(tokens)
        node = self.root.children.get(str(n))
        if node is None:
            return None
        depth = 1
        for tok in tokens:
            if depth >= self.max_node_depth or depth == n:
                break
            nxt = node.children.get(tok) or node.children.get(PARAM)
            if nxt is None:
                return None
            node = nxt
            depth += 1
        best, best_sim, best_params = None, -1.0, -1
        literal_param = PARAM in tokens  # rare: then `<_>` = `<_>` must not count as equal
        for cid in node.clusters:
            c = self._get(cid)
            if c is None:
                continue
            params = c.tokens.count(PARAM)
            same = sum(map(str.__eq__, c.tokens, tokens))  # equal tokens, in C
            if literal_param:
                same -= sum(1 for a, b in zip(c.tokens, tokens, strict=True)
                            if a == PARAM and b == PARAM)
            sim = same / n
            if sim > best_sim or (sim == best_sim and params > best_params):
                best, best_sim, best_params = c, sim, params
        return best if best_sim >= SIM_TH else None

    def _add_to_tree(self, c: Cluster) -> None:
        n = len(c.tokens)
        node = self.root.children.setdefault(str(n), _Node())
        if n == 0:
            node.clusters.append(c.id)
            return
        depth = 1
        for tok in c.tokens:
            if depth >= self.max_node_depth or depth >= n:
                node.clusters = [i for i in node.clusters if i in self.clusters] + [c.id]
                return
            child = node.children.get(tok)
            if child is None:
                wild = node.children.get(PARAM)
                full = MAX_CHILDREN
                if _has_digit(tok):
                    child = wild or node.children.setdefault(PARAM, _Node())
                elif wild is not None:
                    child = node.children.setdefault(tok, _Node()) \
                        if len(node.children) < full else wild
                elif len(node.children) + 1 < full:
                    child = node.children.setdefault(tok, _Node())
                elif len(node.children) + 1 == full:
                    child = node.children.setdefault(PARAM, _Node())
                else:
                    child = wild or node.children.setdefault(PARAM, _Node())
            node = child
            depth += 1

    # -- reading ----------------------------------------------------------------------

    def pattern(self, c: Cluster) -> str:
        return dedupe_params(self.tokenizer.join(c.tokens, c.state))

    def prune(self, before_ms: int) -> None:
        """Forget samples before `before_ms`, and clusters left without any."""
        for cid, c in list(self.clusters.items()):
            c.prune(before_ms)
            if not c.buckets:
                del self.clusters[cid]
        self._prune_tree(self.root)

    def _prune_tree(self, node: _Node) -> int:
        for key, child in list(node.children.items()):
            if not self._prune_tree(child):
                del node.children[key]
        node.clusters = [i for i in node.clusters if i in self.clusters]
        return len(node.children) + len(node.clusters)
