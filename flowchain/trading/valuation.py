"""Profit, exposure and loss in the account currency, from each symbol's contract and currencies.

A symbol's price difference makes profit in its **profit currency** (``currency_profit`` in
MetaTrader 5's ``symbol_info``: USD for EURUSD and XAUUSD, JPY for USDJPY, GBP for EURGBP)::

    profit = (close - open) x lots x contract_size          # profit currency; lots signed

and the account books it in its own currency, converted at the current rate of a quoted pair
that links the two currencies:

* the profit currency is the account currency (EURUSD, XAUUSD on a USD account): no conversion;
* a pair has the profit currency as base and the account currency as profit currency
  (GBPUSD for GBP on a USD account): multiply by its rate;
* a pair has them the other way round (USDJPY for JPY on a USD account; the traded symbol itself
  when its base currency is the account currency): divide by its rate;
* else two such pairs through a third currency (GBPJPY's JPY on a EUR account: USDJPY, then
  EURUSD).

Each leg uses the side of the pair's quote that is less favourable to the account, as MetaTrader
5 does (its ``trade_tick_value_loss`` exceeds ``trade_tick_value_profit``): a profit is
multiplied by the bid or divided by the ask; a loss is multiplied by the ask or divided by the
bid. When no chain of quoted pairs links the two currencies, :class:`Valuation` raises
:class:`ValuationError` naming the symbol and the pairs that would do: an amount is never taken
as already in the account currency.

The conversions are resolved once per symbol; valuing then reads the live :class:`Quote` objects
the broker marks on every tick, with no look-up and no allocation beyond the float it returns.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import msgspec

from flowchain.errors import FlowChainError

__all__ = ["DEFAULT_ACCOUNT_CURRENCY", "DEFAULT_CONTRACT_SPECS", "ContractSpec", "Conversion",
           "Instrument", "Quote", "Valuation", "ValuationError", "check_currency"]

DEFAULT_ACCOUNT_CURRENCY = "USD"


class ValuationError(FlowChainError, ValueError):
    """A symbol cannot be valued in the account currency: no spec, no conversion, no quote yet.

    Attributes
    ----------
    symbol : str or None
        The symbol that could not be valued, when one was asked for.
    """

    def __init__(self, message: str, symbol: str | None = None) -> None:
        super().__init__(message)
        self.symbol = symbol


class ContractSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What valuing a symbol needs, as MetaTrader 5's ``symbol_info`` names it.

    Attributes
    ----------
    trade_contract_size : float
        Units of the base currency (or ounces, barrels ...) in one lot: 100,000 for a forex
        pair, 100 for XAUUSD, 5,000 for XAGUSD.
    currency_base : str
        The currency (or asset) bought by a buy: EUR for EURUSD, XAU for XAUUSD.
    currency_profit : str
        The currency the price is quoted in, so profit is made in: USD for EURUSD, JPY for USDJPY.
    """

    trade_contract_size: float
    currency_base: str
    currency_profit: str

    @classmethod
    def from_symbol_info(cls, info: object) -> ContractSpec:
        """Return the spec of a MetaTrader 5 ``symbol_info()`` record (or anything with its
        ``trade_contract_size``, ``currency_base`` and ``currency_profit`` attributes)."""
        return cls(trade_contract_size=float(info.trade_contract_size),  # type: ignore[attr-defined]
                   currency_base=str(info.currency_base),  # type: ignore[attr-defined]
                   currency_profit=str(info.currency_profit))  # type: ignore[attr-defined]

    def __post_init__(self) -> None:
        size = self.trade_contract_size
        if isinstance(size, bool) or not size > 0 or size == float("inf"):
            raise ValueError(f"trade_contract_size must be a finite number > 0, got {size!r}")
        check_currency(self.currency_base, "currency_base")
        check_currency(self.currency_profit, "currency_profit")


def check_currency(code: str, key: str = "currency") -> None:
    """Refuse anything but a currency or asset code of 3 to 6 capital letters or digits.

    Raises
    ------
    ValueError
        Naming ``key`` and the value received.
    """
    if not (isinstance(code, str) and 3 <= len(code) <= 6 and code.isascii() and code.isalnum()
            and code == code.upper() and not code.isdigit()):
        raise ValueError(f"{key} must be a currency code such as USD, EUR or XAU (3 to 6 capital "
                         f"letters or digits), got {code!r}")


_FX = 100_000.0
DEFAULT_CONTRACT_SPECS: Mapping[str, ContractSpec] = MappingProxyType({
    name: ContractSpec(trade_contract_size=size, currency_base=base, currency_profit=profit)
    for name, size, base, profit in (
        ("EURUSD", _FX, "EUR", "USD"), ("GBPUSD", _FX, "GBP", "USD"),
        ("AUDUSD", _FX, "AUD", "USD"), ("NZDUSD", _FX, "NZD", "USD"),
        ("USDJPY", _FX, "USD", "JPY"), ("USDCHF", _FX, "USD", "CHF"),
        ("USDCAD", _FX, "USD", "CAD"), ("EURGBP", _FX, "EUR", "GBP"),
        ("EURJPY", _FX, "EUR", "JPY"), ("GBPJPY", _FX, "GBP", "JPY"),
        ("EURCHF", _FX, "EUR", "CHF"), ("XAUUSD", 100.0, "XAU", "USD"),
        ("XAGUSD", 5_000.0, "XAG", "USD"),
    )
})
"""Contract sizes and currencies of common symbols, as MetaTrader 5 brokers usually set them
(forex 100,000 units of the base currency; gold 100 oz; silver 5,000 oz)."""


class Quote:
    """The latest bid and ask of one symbol (0.0 before its first quote); the broker marks it."""

    __slots__ = ("symbol", "bid", "ask")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bid = 0.0
        self.ask = 0.0

    def __repr__(self) -> str:
        return f"Quote({self.symbol} {self.bid:g}/{self.ask:g})"


class Conversion:
    """Turns an amount in one currency into the account currency through zero to two pairs.

    Calling it converts; each leg multiplies (the amount is in the pair's base currency) or
    divides (it is in the pair's profit currency) by the pair's bid or ask, whichever is less
    favourable to the account for the amount's sign.

    Attributes
    ----------
    currency : str
        The currency converted from.
    account_currency : str
    route : tuple of str
        The pairs used, in order (empty when ``currency`` is the account currency).
    identity : bool
        True when ``currency`` is the account currency (calling returns the amount as is).
    """

    __slots__ = ("currency", "account_currency", "route", "identity", "_n", "_q1", "_m1", "_q2",
                 "_m2")

    def __init__(self, currency: str, account_currency: str,
                 legs: tuple[tuple[Quote, bool], ...]) -> None:
        if len(legs) > 2:
            raise ValueError(f"Conversion: at most two legs, got {len(legs)}")
        self.currency = currency
        self.account_currency = account_currency
        self.route = tuple(q.symbol for q, _ in legs)
        self._n = len(legs)
        self.identity = not legs
        self._q1, self._m1 = legs[0] if legs else (None, True)
        self._q2, self._m2 = legs[1] if len(legs) > 1 else (None, True)

    @property
    def ready(self) -> bool:
        """Whether every pair of the route has been quoted (a positive bid and ask)."""
        n = self._n
        if n == 0:
            return True
        quote = self._q1
        if not (quote.bid > 0.0 and quote.ask > 0.0):
            return False
        quote = self._q2
        return n == 1 or (quote.bid > 0.0 and quote.ask > 0.0)

    def unquoted(self) -> tuple[str, ...]:
        """The pairs of the route that have no quote yet."""
        return tuple(q.symbol for q in (self._q1, self._q2)[:self._n]
                     if not (q.bid > 0.0 and q.ask > 0.0))

    def __call__(self, amount: float) -> float:
        """Return ``amount`` (in :attr:`currency`) in the account currency at the current rates.

        Raises
        ------
        ValuationError
            When a pair of the route has no quote yet.
        """
        n = self._n
        if n == 0:
            return amount
        quote = self._q1
        if self._m1:
            rate = quote.bid if amount > 0.0 else quote.ask
            if not rate > 0.0:
                raise self._unquoted(quote)
            amount *= rate
        else:
            rate = quote.ask if amount > 0.0 else quote.bid
            if not rate > 0.0:
                raise self._unquoted(quote)
            amount /= rate
        if n == 1:
            return amount
        quote = self._q2
        if self._m2:
            rate = quote.bid if amount > 0.0 else quote.ask
            if not rate > 0.0:
                raise self._unquoted(quote)
            return amount * rate
        rate = quote.ask if amount > 0.0 else quote.bid
        if not rate > 0.0:
            raise self._unquoted(quote)
        return amount / rate

    def _unquoted(self, quote: Quote) -> ValuationError:
        return ValuationError(f"cannot convert {self.currency} to {self.account_currency} yet: "
                              f"{quote.symbol} has no quote")

    def __repr__(self) -> str:
        via = " -> ".join(self.route) or "same currency"
        return f"Conversion({self.currency}->{self.account_currency} via {via})"


class Instrument:
    """One symbol as the account values it: its spec, its live quote, its profit conversion.

    Attributes
    ----------
    symbol : str
    spec : ContractSpec
    quote : Quote
        The symbol's own live quote (the broker marks it).
    conversion : Conversion
        From the symbol's profit currency to the account currency.
    contract_size : float
    """

    __slots__ = ("symbol", "spec", "quote", "conversion", "contract_size")

    def __init__(self, symbol: str, spec: ContractSpec, quote: Quote,
                 conversion: Conversion) -> None:
        self.symbol = symbol
        self.spec = spec
        self.quote = quote
        self.conversion = conversion
        self.contract_size = spec.trade_contract_size

    def profit(self, lots: float, price_open: float, price_close: float) -> float:
        """Return the account-currency profit of ``lots`` (+ long, - short) opened at
        ``price_open`` and closed (or marked) at ``price_close``.

        Raises
        ------
        ValuationError
            When a pair of the conversion route has no quote yet.
        """
        return self.conversion((price_close - price_open) * lots * self.contract_size)

    def notional(self, lots: float, price: float) -> float:
        """Return the account-currency value of ``lots`` (signed) at ``price``."""
        return self.conversion(lots * self.contract_size * price)

    def __repr__(self) -> str:
        s = self.spec
        return (f"Instrument({self.symbol} {s.trade_contract_size:g} {s.currency_base}/"
                f"{s.currency_profit}, {self.conversion!r})")


class Valuation:
    """Values positions of any known symbol in one account currency.

    Parameters
    ----------
    account_currency : str, optional
        The currency PnL, exposure and loss limits are in (USD by default).
    specs : mapping, optional
        Symbol name -> :class:`ContractSpec`; :data:`DEFAULT_CONTRACT_SPECS` by default.
    quoted : iterable of str, optional
        The symbols whose quotes will arrive (the node's symbols): only these serve as
        conversion pairs. Every symbol of ``specs`` when omitted.

    Raises
    ------
    ValueError
        When the account currency is not a currency code.
    """

    def __init__(self, account_currency: str = DEFAULT_ACCOUNT_CURRENCY,
                 specs: Mapping[str, ContractSpec] | None = None,
                 quoted: Iterable[str] | None = None) -> None:
        check_currency(account_currency, "account currency")
        self.account_currency = account_currency
        self.specs: Mapping[str, ContractSpec] = MappingProxyType(
            dict(specs if specs is not None else DEFAULT_CONTRACT_SPECS))
        names = list(self.specs) if quoted is None else list(dict.fromkeys(quoted))
        self.quoted: tuple[str, ...] = tuple(names)
        """The symbols conversions may use, in the order given."""
        self._pairs = tuple((n, self.specs[n]) for n in names if n in self.specs)
        self._quotes: dict[str, Quote] = {}
        self._conversions: dict[str, Conversion] = {}
        self._instruments: dict[str, Instrument] = {}

    def quote(self, symbol: str) -> Quote:
        """Return the live quote object of ``symbol`` (created at 0.0 on first use)."""
        quote = self._quotes.get(symbol)
        if quote is None:
            quote = self._quotes[symbol] = Quote(symbol)
        return quote

    def conversion(self, currency: str) -> Conversion:
        """Return the conversion of ``currency`` into the account currency (cached).

        The shortest route over the quoted pairs wins (at most two pairs); among equally short
        ones, the pair listed first in :attr:`quoted`.

        Raises
        ------
        ValuationError
            When no route of at most two quoted pairs links the two currencies.
        """
        found = self._conversions.get(currency)
        if found is not None:
            return found
        legs = self._route(currency)
        if legs is None:
            raise ValuationError(self._no_route(currency))
        found = self._conversions[currency] = Conversion(
            currency, self.account_currency,
            tuple((self.quote(symbol), multiply) for symbol, multiply in legs))
        return found

    def instrument(self, symbol: str) -> Instrument:
        """Return ``symbol``'s instrument (cached).

        Raises
        ------
        ValuationError
            When ``symbol`` has no spec, or its profit currency no conversion.
        """
        found = self._instruments.get(symbol)
        if found is not None:
            return found
        spec = self.specs.get(symbol)
        if spec is None:
            raise ValuationError(
                f"{symbol} has no symbol spec (contract size, base and profit currency), so its "
                f"profit cannot be valued; known: {', '.join(sorted(self.specs)) or 'none'}",
                symbol)
        try:
            conversion = self.conversion(spec.currency_profit)
        except ValuationError as exc:
            raise ValuationError(f"{symbol}: {exc}", symbol) from None
        found = self._instruments[symbol] = Instrument(symbol, spec, self.quote(symbol),
                                                       conversion)
        return found

    def check(self, symbols: Iterable[str]) -> None:
        """Resolve every symbol of ``symbols`` now, so a missing spec or route fails at start.

        Raises
        ------
        ValuationError
            For the first symbol that cannot be valued.
        """
        for symbol in symbols:
            self.instrument(symbol)

    def _route(self, currency: str) -> tuple[tuple[str, bool], ...] | None:
        """Breadth-first over currencies: the legs ``(symbol, multiply)`` of a shortest route."""
        target = self.account_currency
        if currency == target:
            return ()
        paths: dict[str, tuple[tuple[str, bool], ...]] = {currency: ()}
        queue = deque([currency])
        while queue:
            here = queue.popleft()
            legs = paths[here]
            if len(legs) == 2:
                continue
            for name, spec in self._pairs:
                if spec.currency_base == spec.currency_profit:
                    continue
                if spec.currency_base == here:
                    there, multiply = spec.currency_profit, True
                elif spec.currency_profit == here:
                    there, multiply = spec.currency_base, False
                else:
                    continue
                if there in paths:
                    continue
                paths[there] = legs + ((name, multiply),)
                if there == target:
                    return paths[there]
                queue.append(there)
        return None

    def _no_route(self, currency: str) -> str:
        a = self.account_currency
        quoted = ", ".join(self.quoted) or "none"
        return (f"no quoted pair converts {currency} to the account currency {a} (quoted symbols: "
                f"{quoted}); trade a pair such as {currency}{a} or {a}{currency} as well (with "
                f"its spec), or use an account currency the symbols reach")
