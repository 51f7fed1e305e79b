"""ProxyDeltas: how much the accuracy proxy changes when one layer changes candidate.

Used by the rule mapper's proxy-guard and proxy-spend (rule/trade.py), which need the proxy
change of many one-layer moves from a current assignment. Two modes, chosen from the proxy object:

  local   the proxy is a plain TableProxy: score = sum_l w_l s_l(cand) / sum_l w_l over every
          layer of the problem, so changing layer l from a to b changes the score by exactly
          w_l (s_l(b) - s_l(a)) / sum w. Deltas cost nothing; the proxy is evaluated in full
          only at the start (and by the caller to check the end). A TableProxy subclass that
          overrides score() is not assumed to be local.
  probe   any other proxy (held-out accuracy, a user callable): a move's delta is estimated
          with one full evaluation of the current assignment with that one layer changed,
          cached per (layer, from, to) and reused after other layers change (i.e. deltas are
          assumed additive across layers; the caller re-evaluates after each applied step and
          so never trusts an estimate for the floor itself). At most `max_calls` evaluations,
          a fifth of them kept for those re-evaluations: past the rest, `delta` returns None
          and `capped` is set, so a small cap still leaves room for a few steps.

The proxy is only ever called through problem.proxy / the proxy object's own methods.
"""
from __future__ import annotations

from typing import Optional

from .problem import Problem
from .proxy import TableProxy

LOCAL = "local"
PROBE = "probe"


def is_local(proxy) -> bool:
    """Whether one-layer deltas of `proxy` can be computed exactly without evaluating it."""
    return isinstance(proxy, TableProxy) and type(proxy).score is TableProxy.score


class ProxyDeltas:
    """Proxy value of a current assignment and the deltas of one-layer moves from it."""

    def __init__(self, problem: Problem, assignment: dict, max_calls: int):
        self.problem = problem
        self.proxy = problem.proxy_fn
        self.mode = LOCAL if is_local(self.proxy) else PROBE
        self.max_calls = int(max_calls)
        self.probe_calls = self.max_calls - max(1, self.max_calls // 5)
        self.calls = 0            # full evaluations this object asked for
        self.capped = False       # a delta was refused because of max_calls
        self._cache: dict = {}
        if self.mode == LOCAL:
            self._wsum = sum(self.proxy.weight(n) for n in problem.names)
        self.value = self.evaluate(assignment)

    def evaluate(self, assignment: dict) -> float:
        """The proxy of a complete assignment (one full evaluation)."""
        self.calls += 1
        return self.problem.proxy(assignment)

    def delta(self, assignment: dict, layer: str, cand) -> Optional[float]:
        """Proxy change if `layer` switched from assignment[layer] to `cand`; None when it
        cannot be known (no table entry, or the evaluation cap is reached)."""
        cur = assignment[layer]
        if cand.key == cur.key:
            return 0.0
        if self.mode == LOCAL:
            try:
                w = self.proxy.weight(layer)
                return w * (self.proxy.layer_score(layer, cand)
                             - self.proxy.layer_score(layer, cur)) / self._wsum
            except KeyError:
                return None
        key = (layer, cur.key, cand.key)
        if key in self._cache:
            return self._cache[key]
        back = (layer, cand.key, cur.key)
        if back in self._cache:
            return -self._cache[back]
        if self.calls >= self.probe_calls:
            self.capped = True
            return None
        trial = dict(assignment)
        trial[layer] = cand
        d = self.evaluate(trial) - self.value
        self._cache[key] = d
        return d

    def commit(self, assignment: dict, estimate: float) -> float:
        """The new value after a step was applied to `assignment`: the running sum plus the
        exact delta (local), or a fresh full evaluation (probe). Returns the step's change."""
        old = self.value
        if self.mode == LOCAL:
            self.value = old + estimate
        else:
            self.value = self.evaluate(assignment)
        return self.value - old

    @property
    def exhausted(self) -> bool:
        """No evaluation left (probe mode): a step could not even be checked."""
        return self.mode == PROBE and self.calls >= self.max_calls
