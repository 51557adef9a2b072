"""Money: integer minor units plus an ISO 4217 code, and the one rounding rule.

Amounts in documents are exact decimal strings in major units ("50.00"); records carry minor
units (5000). Percentages round half-up to the minor unit. No floats anywhere.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

# Active ISO 4217 codes whose minor unit is not 2 decimal places.
_EXPONENT = {
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    "CLF": 4,
    "UYW": 4,
}
# Active ISO 4217 codes (2026), including those with exponent 2.
CURRENCIES = frozenset(
    """AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN
    BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN
    ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD
    JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT
    MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG
    QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT
    TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XCD XCG XOF
    XPF YER ZAR ZMW ZWG""".split()
)


class MoneyError(ValueError):
    """An amount or currency that cannot be represented exactly."""


def exponent(currency: str) -> int:
    if currency not in CURRENCIES:
        raise MoneyError(f"{currency!r} is not an active ISO 4217 currency code")
    return _EXPONENT.get(currency, 2)


def to_minor(amount: str, currency: str) -> int:
    """'50.00' USD -> 5000; rejects negatives, non-numbers and excess decimals."""
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError):
        raise MoneyError(f"{amount!r} is not a decimal amount") from None
    if not value.is_finite():
        raise MoneyError(f"{amount!r} is not a finite amount")
    if value < 0:
        raise MoneyError(f"{amount!r} is negative")
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{amount!r} has more decimals than {currency} allows")
    return int(scaled)


def to_major(amount_minor: int, currency: str) -> str:
    """5000 USD -> '50.00' (exact, for display and reports)."""
    exp = exponent(currency)
    return f"{Decimal(amount_minor).scaleb(-exp):.{exp}f}"


def percent_of(amount_minor: int, percent: Decimal) -> int:
    """`percent`% of an amount in minor units, rounded half-up to the minor unit."""
    share = Decimal(amount_minor) * percent / Decimal(100)
    return int(share.quantize(Decimal(1), rounding=ROUND_HALF_UP))
