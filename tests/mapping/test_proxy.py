"""mapping.proxy: TableProxy (weighted mean of a per-layer table) and CallableProxy (memoised)."""
import math

import pytest

from mapping import DENSE, Candidate, CallableProxy, TableProxy

B41 = Candidate("block", (4, 1), 0.8)
B81 = Candidate("block", (8, 1), 0.8)


def test_table_proxy_is_the_weighted_mean():
    retained = {"a": {B41.key: 0.6}, "b": {B81.key: 0.3}}
    weights = {"a": 1.0, "b": 3.0}
    p = TableProxy(retained, weights)
    got = p.score({"a": B41, "b": B81})
    assert got == pytest.approx((1.0 * 0.6 + 3.0 * 0.3) / 4.0)
    # Unweighted: the plain mean.
    assert TableProxy(retained).score({"a": B41, "b": B81}) == pytest.approx((0.6 + 0.3) / 2)


def test_dense_scores_one_unless_listed():
    p = TableProxy({"a": {B41.key: 0.5}})
    assert p.score({"a": DENSE}) == 1.0
    assert TableProxy({"a": {"dense": 0.99}}).score({"a": DENSE}) == 0.99


def test_missing_entries_are_errors_not_guesses():
    p = TableProxy({"a": {B41.key: 0.5}}, {"a": 1.0})
    with pytest.raises(KeyError, match="block8x1"):
        p.score({"a": B81})
    with pytest.raises(KeyError, match="'b'"):
        p.score({"a": B41, "b": DENSE})
    with pytest.raises(ValueError, match=">= 0"):
        TableProxy({}, {"a": -1.0})


def test_callable_proxy_memoises_on_the_candidate_keys():
    seen = []

    def fn(assignment):
        seen.append(dict(assignment))
        return sum(c.sparsity for c in assignment.values())

    p = CallableProxy(fn)
    a = {"x": B41, "y": DENSE}
    assert p.score(a) == pytest.approx(0.8)
    # Same candidates, different dict order and objects: a cache hit.
    assert p.score({"y": Candidate(), "x": Candidate("block", (4, 1), 0.8)}) == pytest.approx(0.8)
    assert (p.calls, p.hits, len(seen)) == (1, 1, 1)
    p.score({"x": B81, "y": DENSE})
    assert p.calls == 2


def test_callable_proxy_without_cache_and_bad_values():
    p = CallableProxy(lambda a: 1.0, cache=False)
    p.score({"x": B41})
    p.score({"x": B41})
    assert p.calls == 2 and p.hits == 0
    with pytest.raises(ValueError, match="nan"):
        CallableProxy(lambda a: math.nan).score({"x": B41})
    with pytest.raises(TypeError):
        CallableProxy(3)
