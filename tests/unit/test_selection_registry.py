"""The strategy registry: every registered strategy is offered by the admin and the CLI, accepted by the
settings validation, named in the docs and routes in `select_account`; registering one is all that takes."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from admin_flask.forms import PoolForm
from pooler.cli.main import build_parser
from pooler.selection import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    PoolIndex,
    PoolPolicy,
    PoolView,
    RoutingStrategy,
    SelectionRequest,
    StrategyState,
    named_strategy,
    select_account,
    strategy_for,
)
from pooler.selection import strategies as strategies_module
from pooler.selection.strategies import ViewOrder, usable
from pooler.states import Strategy
from tests.unit.test_selection_select import NOW, acct

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md"


def _choices(parser: argparse.ArgumentParser, *path: str) -> list[str]:
    """The `--strategy` choices of `pooler pool create`, found through the real parser."""
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    action = next(a for a in parser._actions if "--strategy" in a.option_strings)
    assert action.choices is not None
    return list(action.choices)


def test_the_registry_names_every_stored_strategy_once() -> None:
    assert list(STRATEGIES) == [s.value for s in Strategy]
    assert all(name == entry.name.value and entry.label for name, entry in STRATEGIES.items())
    assert DEFAULT_STRATEGY is STRATEGIES[Strategy.LEAST_USED]


def test_admin_form_and_cli_offer_every_registered_strategy() -> None:
    form_choices = PoolForm.strategy.kwargs["choices"]
    assert [value for value, _ in form_choices] == list(STRATEGIES)
    assert all(STRATEGIES[value].label in text for value, text in form_choices)
    assert _choices(build_parser(), "pool", "create") == list(STRATEGIES)


def test_validation_accepts_every_registered_strategy_and_names_them_when_refusing() -> None:
    for name, entry in STRATEGIES.items():
        assert named_strategy(name) is entry.name
    with pytest.raises(ValueError, match="unknown strategy 'fastest'; choose one of least-used, round-robin"):
        named_strategy("fastest")


def test_the_docs_name_every_registered_strategy() -> None:
    text = DOCS.read_text()
    start = text.index("- **Strategies**")
    paragraph = text[start : text.index("\n- **", start + 1)]
    assert [name for name in STRATEGIES if name not in paragraph] == []


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_registered_strategy_routes(name: str) -> None:
    policy = PoolPolicy(pool_status="active", strategy=name)
    index = PoolIndex(policy, [acct(3, priority=1), acct(1, priority=2), acct(2, priority=3)])
    assert index.routing is STRATEGIES[name]
    view = index.view(NOW, None)
    order = STRATEGIES[name].order
    if order is ViewOrder.SCORE:  # how scores rank is test_selection_select's subject
        assert sorted(view.order) == [1, 2, 3] and len(view.scores) == 3
    else:
        assert view.order == {ViewOrder.RING: (1, 2, 3), ViewOrder.PRIORITY: (3, 1, 2)}[order]
        assert view.scores == ()
    picked = select_account(policy, index, SelectionRequest(now=NOW), StrategyState(seed=1))
    assert picked.account_id in (1, 2, 3)
    excluded = select_account(policy, index, SelectionRequest(now=NOW, exclude=frozenset({1, 2})), StrategyState())
    assert excluded.account_id == 3


def test_unknown_stored_strategy_routes_as_the_default() -> None:
    assert strategy_for("fastest") is DEFAULT_STRATEGY
    assert PoolIndex(PoolPolicy(pool_status="active", strategy="fastest"), [acct(1)]).routing is DEFAULT_STRATEGY


def test_a_registered_strategy_is_all_the_index_and_select_need(monkeypatch: pytest.MonkeyPatch) -> None:
    # A strategy that exists nowhere but in the registry: the highest account id first.
    def pick_last(view: PoolView, request: SelectionRequest, cap: int | None, state: StrategyState) -> int | None:
        return next((aid for aid in reversed(view.ring) if usable(aid, request, cap)), None)

    newest = RoutingStrategy(Strategy.RANDOM, "highest account id first", ViewOrder.RING, pick_last)
    monkeypatch.setitem(strategies_module.STRATEGIES, "last-first", newest)  # type: ignore[index]
    policy = PoolPolicy(pool_status="active", strategy="last-first")
    index = PoolIndex(policy, [acct(1), acct(2), acct(3)])
    assert index.routing is newest
    assert select_account(policy, index, SelectionRequest(now=NOW), StrategyState()).account_id == 3
    tried = SelectionRequest(now=NOW, exclude=frozenset({3}))
    assert select_account(policy, index, tried, StrategyState()).account_id == 2
