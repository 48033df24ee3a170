"""The XTS instrument master parser and renderer (trading_ws.brokers.xts._instruments)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import example, given, settings, strategies as st

from trading_ws import DecodeError
from trading_ws.brokers.xts import (
    EXCHANGE_BY_SEGMENT,
    SEGMENT_IDS,
    XtsInstrument,
    parse_master,
    parse_master_lenient,
    parse_master_row,
    render_master,
)

# Rows in the three layouts of section 5 (values as in the real files the reference describes).
EQUITY = (
    "NSECM|2885|8|RELIANCE|RELIANCE-EQ|EQ|RELIANCE-EQ|1100100002885|1500.5|1228.1|100000.0|0.05|1|1|"
    "RELIANCE|INE002A01018|1|1|RELIANCE-EQ|0|0|0"
)
BE_EQUITY = (
    "NSECM|14366|8|IDEA|IDEA-BE|BE|IDEA-BE|1100100014366|9.5|7.7|1000000|0.01|1|1|IDEA|INE669E01016|1|1|"
    "IDEA-BE|0|0|0"
)
BSE_EQUITY = (
    "BSECM|500325|8|RELIANCE|RELIANCE|A|RELIANCE-A|1100300500325|1500|1200|50000|0.05|1|1|RELIANCE|"
    "INE002A01018|1|1|RELIANCE-A|0|0|0"
)
INDEX_FUTURE = (
    "NSEFO|35013|1|NIFTY|NIFTY26DECFUT|FUTIDX|NIFTY-FUTIDX|2003500035013|26000|21000|1800|0.1|75|1|-1|"
    "Nifty 50|2026-12-29T14:30:00|NIFTY 29DEC2026|1|1|NIFTY26DECFUT"
)
SPREAD = (
    "NSEFO|12703929|4|GAIL|GAIL26JAN26FEBFUT|FUTSTK|GAIL-FUTSTK|2100112703929|4.06|-4.06|126001|0.01|3150|1|"
    "-1||2026-01-27T14:30:00|GAIL 27JAN24FEB SPD|1|1|GAIL26JAN26FEBFUT"
)
STOCK_OPTION = (
    "NSEFO|96594|2|HCLTECH|HCLTECH26FEB1160PE|OPTSTK|HCLTECH-OPTSTK|2605500096594|20.05|0.05|14001|0.05|350|1|"
    "1100100007229|HCLTECH|2026-02-24T14:30:00|1160|4|HCLTECH 24FEB2026 PE 1160|1|1|HCLTECH26FEB1160PE"
)
INDEX_OPTION = (
    "NSEFO|43422|2|NIFTY|NIFTY21JAN14000CE|OPTIDX|NIFTY-OPTIDX|2102800043422|300|0.05|5000.75|0.05|75|1|-1|"
    "Nifty 50|2021-01-28T14:30:00|14000|3|NIFTY 28JAN2021 CE 14000|1|1|NIFTY21JAN14000CE"
)
MCX_FUTURE = (
    "MCXFO|429116|1|CRUDEOIL|CRUDEOIL26JANFUT|FUTCOM|CRUDEOIL-FUTCOM|5100100429116|6500|5000|10000|1|100|1|"
    "-1||2026-01-19T23:30:00|CRUDEOIL 19JAN2026|1|1|CRUDEOIL26JANFUT"
)


def test_equity_row() -> None:
    inst = parse_master_row(EQUITY)
    assert inst == XtsInstrument(
        "NSECM",
        1,
        2885,
        8,
        "RELIANCE",
        "RELIANCE-EQ",
        "EQ",
        "RELIANCE",
        0.05,
        1,
        isin="INE002A01018",
        freeze_quantity=100000,
        price_band_high=1500.5,
        price_band_low=1228.1,
        multiplier=1,
        composite_id=1100100002885,
    )
    assert inst.symbol == "NSE:RELIANCE"
    assert inst.is_cash


def test_cash_symbols() -> None:
    assert parse_master_row(BE_EQUITY).symbol == "NSE:IDEA-BE"
    bse = parse_master_row(BSE_EQUITY)
    assert (bse.segment, bse.segment_id, bse.symbol) == ("BSECM", 11, "BSE:RELIANCE")


def test_future_spread_and_options() -> None:
    future = parse_master_row(INDEX_FUTURE)
    assert (future.segment_id, future.instrument_id, future.instrument_type) == (2, 35013, 1)
    assert future.expiry == date(2026, 12, 29)
    assert (future.strike, future.option_type) == (None, None)
    assert future.underlying_index_name == "Nifty 50"
    assert future.underlying_instrument_id is None  # -1 for index derivatives
    assert future.display_name == "NIFTY 29DEC2026"
    assert (future.tick_size, future.lot_size, future.freeze_quantity) == (0.1, 75, 1800)
    assert future.symbol == "NFO:NIFTY26DECFUT"
    assert not future.is_cash

    spread = parse_master_row(SPREAD)
    assert (spread.instrument_type, spread.price_band_low) == (4, -4.06)
    assert spread.underlying_index_name is None
    assert spread.symbol == "NFO:GAIL26JAN26FEBFUT"

    put = parse_master_row(STOCK_OPTION)
    assert (put.strike, put.option_type, put.expiry) == (1160.0, "PE", date(2026, 2, 24))
    assert put.underlying_instrument_id == 1100100007229
    assert put.underlying_index_name == "HCLTECH"
    assert put.display_name == "HCLTECH 24FEB2026 PE 1160"

    call = parse_master_row(INDEX_OPTION)
    assert (call.strike, call.option_type) == (14000.0, "CE")
    assert call.freeze_quantity == 5000  # fractional text, floored
    assert call.composite_id == 2102800043422
    assert call.symbol == "NFO:NIFTY21JAN14000CE"

    assert parse_master_row(MCX_FUTURE).symbol == "MCX:CRUDEOIL26JANFUT"


def test_parse_master_mixed_segments_blank_lines_and_crlf() -> None:
    text = "\r\n".join([EQUITY, INDEX_FUTURE, "", STOCK_OPTION]) + "\r\n"
    instruments = parse_master(text)
    assert [i.instrument_id for i in instruments] == [2885, 35013, 96594]
    assert instruments[2].description == "HCLTECH26FEB1160PE"
    assert parse_master("") == []


def test_option_type_as_text_and_unknown() -> None:
    assert parse_master_row(INDEX_OPTION.replace("|14000|3|", "|14000|CE|")).option_type == "CE"
    assert parse_master_row(INDEX_OPTION.replace("|14000|3|", "|14000|9|")).option_type is None


def test_short_cash_row_without_isin_still_parses() -> None:
    row = "|".join(EQUITY.split("|")[:15])
    inst = parse_master_row(row)
    assert (inst.display_name, inst.isin) == ("RELIANCE", None)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("XXX|1|8|A|A|EQ|A-EQ|1|1|1|1|0.05|1|1|A|I|1|1|A|0|0|0", "unknown segment"),
        ("NSECM|1|8|A", "at least 15 fields"),
        ("|".join(INDEX_FUTURE.split("|")[:20]), "23 (options) or 21 (futures)"),
        (EQUITY.replace("|2885|", "|abc|"), "could not convert"),
        (EQUITY.replace("|0.05|", "|x|"), "could not convert"),
        (EQUITY.replace("|0.05|", "|inf|"), "finite"),
        (INDEX_FUTURE.replace("2026-12-29T14:30:00", "29Dec2026"), "isoformat"),
        (INDEX_OPTION.replace("|14000|3|", "|fourteen|3|"), "could not convert"),
        (INDEX_OPTION.replace("|75|1|-1|", "|7.5|1|-1|"), "expected an integer"),
        (EQUITY.replace("|2885|", "|0|"), "positive 64-bit"),
        (EQUITY.replace("|2885|", "|-2885|"), "positive 64-bit"),
        (EQUITY.replace("|2885|", f"|{2**63}|"), "positive 64-bit"),
        (EQUITY.replace("NSECM|", "NSE\x1b[2J\x85\u2028CM" + "x" * 5000 + "|", 1), "unknown segment"),
    ],
)
def test_malformed_rows_raise_with_line_number(row: str, reason: str) -> None:
    text = "\n".join([EQUITY, row, INDEX_FUTURE])
    with pytest.raises(DecodeError) as info:
        parse_master(text)
    message = str(info.value)
    assert "line 2" in message
    assert reason in message
    assert len(message) <= 300  # server text is quoted cut short, with control characters escaped
    assert not any(char in message for char in "\r\n\x1b")
    assert info.value.raw == row
    good, bad = parse_master_lenient(text)
    assert [i.instrument_id for i in good] == [2885, 35013]
    assert len(bad) == 1
    assert "line 2" in str(bad[0])


def test_render_master_matches_the_layouts() -> None:
    rows = [EQUITY, INDEX_FUTURE, STOCK_OPTION]
    rendered = render_master(parse_master("\n".join(rows))).split("\n")
    assert [len(r.split("|")) for r in rendered] == [22, 21, 23]
    assert rendered[1] == INDEX_FUTURE  # every field of a future row is kept
    assert rendered[2] == STOCK_OPTION
    assert rendered[0].split("|")[:16] == EQUITY.replace("100000.0", "100000").split("|")[:16]


def test_render_master_refuses_separators_in_fields() -> None:
    inst = parse_master_row(EQUITY)
    with pytest.raises(ValueError, match="contains"):
        render_master([XtsInstrument("NSECM", 1, 1, 8, "A|B", "A", "EQ", "A", 0.05, 1)])
    with pytest.raises(ValueError, match="contains"):
        render_master([inst, XtsInstrument("NSECM", 1, 1, 8, "A", "A\nB", "EQ", "A", 0.05, 1)])


def test_segment_tables() -> None:
    assert SEGMENT_IDS["NSECM"] == 1
    assert SEGMENT_IDS["MCXFO"] == 51
    assert SEGMENT_IDS["MSEICM"] == SEGMENT_IDS["MSECM"] == 41
    assert EXCHANGE_BY_SEGMENT == {
        "NSECM": "NSE",
        "NSEFO": "NFO",
        "NSECD": "CDS",
        "NSECO": "NCO",
        "BSECM": "BSE",
        "BSEFO": "BFO",
        "BSECD": "BCD",
        "MCXFO": "MCX",
    }
    # Segments without a conventional exchange name keep their XTS name as the prefix.
    assert parse_master_row(INDEX_FUTURE.replace("NSEFO|", "NSECO|", 1)).symbol == "NCO:NIFTY26DECFUT"
    assert parse_master_row(INDEX_FUTURE.replace("NSEFO|", "BSECO|", 1)).symbol == "BSECO:NIFTY26DECFUT"
    assert parse_master_row(EQUITY.replace("NSECM|", "MSECM|", 1)).symbol == "MSECM:RELIANCE"


# ---------------------------------------------------------------------------------------------------------
# Property tests.

texts = st.text(st.characters(blacklist_characters="|\r\n", blacklist_categories=["Cs"]), max_size=12)
nonempty = texts.filter(bool)
finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False).map(lambda x: round(x, 6))


@st.composite
def instruments(draw: st.DrawFn) -> XtsInstrument:
    segment = draw(st.sampled_from(sorted(SEGMENT_IDS)))
    common: dict[str, Any] = {
        "segment": segment,
        "segment_id": SEGMENT_IDS[segment],
        "instrument_id": draw(st.integers(1, 2**53)),
        "instrument_type": draw(st.sampled_from([1, 2, 4, 8, 16, 256])),
        "name": draw(texts),
        "description": draw(texts),
        "series": draw(texts),
        "display_name": draw(texts),
        "tick_size": draw(finite),
        "lot_size": draw(st.integers(0, 10**9)),
        "freeze_quantity": draw(st.integers(0, 10**12)),
        "price_band_high": draw(finite),
        "price_band_low": draw(finite),
        "multiplier": draw(st.integers(0, 10**6)),
        "composite_id": draw(st.integers(0, 10**15)),
    }
    if segment.endswith("CM"):
        return XtsInstrument(**common, isin=draw(st.none() | nonempty))
    option = draw(st.booleans())
    return XtsInstrument(
        **common,
        expiry=draw(st.none() | st.dates(date(1980, 1, 1), date(2100, 12, 31))),
        strike=draw(finite) if option else None,
        option_type=draw(st.sampled_from(["CE", "PE"])) if option else None,
        underlying_index_name=draw(st.none() | nonempty),
        underlying_instrument_id=draw(st.none() | st.integers(0, 10**15)),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(instruments(), max_size=8))
def test_master_round_trip(records: list[XtsInstrument]) -> None:
    assert parse_master(render_master(records)) == records


@settings(max_examples=500, deadline=None)
@given(
    st.text()
    | st.lists(st.sampled_from([EQUITY, INDEX_FUTURE, STOCK_OPTION, "", "NSECM|1", "x"]), max_size=5).map(
        "\n".join
    )
    | st.lists(
        st.sampled_from(
            [
                "NSECM",
                "NSEFO",
                "1",
                "-1",
                "0",
                "",
                "2026-01-27T14:30:00",
                "CE",
                "3",
                "x",
                "1e400",
                "\x1b\u2028",
            ]
        ),
        min_size=15,
        max_size=24,
    ).map("|".join)
)
@example(EQUITY.replace("|2885|", "|0|"))  # a row whose id cannot be subscribed is malformed
@example("NSE\x1b[2J" + "x" * 400 + "|1")  # control characters and a long field, quoted in the message
def test_master_parser_never_raises_anything_but_decode_error(text: str) -> None:
    good, bad = parse_master_lenient(text)
    assert all(isinstance(i, XtsInstrument) for i in good)
    assert all(0 < i.instrument_id < 2**63 for i in good)  # usable as subscription keys
    for error in bad:
        assert len(str(error)) <= 300
        assert not any(char in str(error) for char in "\r\n\x00\x1b\x7f\u2028")
    if bad:
        with pytest.raises(DecodeError):
            parse_master(text)
    else:
        assert parse_master(text) == good
