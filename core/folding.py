"""Letters folded for search: ``Müller``, ``Mueller`` and ``MUELLER`` are one name.

A German speaker types an umlaut or its spelling with an ``e`` (``ü`` or
``ue``), ``ß`` or ``ss``, and leaves accents out on a keyboard without them
(``Rene`` for René). Trigram similarity sees ``MUELLER`` and ``MÜLLER`` as
different words (0.33: fewer than Heller or Zeller share with ``MUELLER``),
so the names and places a search or a text filter looks up
(:mod:`core.customers.known`) are compared folded, on both sides: the
umlauts to their ``e`` spelling, ``ß`` to ``SS``, other accented Latin
letters to their base letter, then upper case.

:data:`FOLDED` is the one table. :func:`fold` applies it in Python (the
rank's closeness, the values looked up), and :func:`fold_function_sql` writes
the same mapping as PostgreSQL's immutable ``crm_fold(text)``, which the
index of the known values (``search_term_fold``) is built on; a migration
freezes that SQL, and a test holds both equal on every letter of the table.
Both cases of each letter are mapped, so the fold does not depend on the
server's locale upper-casing ``ü``.
"""

from __future__ import annotations

#: Upper-case letters and how they fold (their lower-case forms fold alike).
_UPPER: dict[str, str] = {
    "Ä": "AE",
    "Ö": "OE",
    "Ü": "UE",
    "ẞ": "SS",
    "Æ": "AE",
    "Œ": "OE",
    **dict.fromkeys("ÀÁÂÃÅĀĂĄ", "A"),
    **dict.fromkeys("ÇĆĈĊČ", "C"),
    **dict.fromkeys("ĎĐ", "D"),
    **dict.fromkeys("ÈÉÊËĒĔĖĘĚ", "E"),
    **dict.fromkeys("ĜĞĠĢ", "G"),
    **dict.fromkeys("ÌÍÎÏĨĪĬĮİ", "I"),
    **dict.fromkeys("ĹĻĽĿŁ", "L"),
    **dict.fromkeys("ÑŃŅŇ", "N"),
    **dict.fromkeys("ÒÓÔÕØŌŎŐ", "O"),
    **dict.fromkeys("ŔŖŘ", "R"),
    **dict.fromkeys("ŚŜŞŠ", "S"),
    **dict.fromkeys("ŢŤŦ", "T"),
    **dict.fromkeys("ÙÚÛŨŪŬŮŰŲ", "U"),
    **dict.fromkeys("ÝŸŶ", "Y"),
    **dict.fromkeys("ŹŻŽ", "Z"),
}

#: Every letter that folds, both cases, and what it folds to (upper case).
FOLDED: dict[str, str] = {
    **_UPPER,
    **{
        letter.lower(): folded
        for letter, folded in _UPPER.items()
        if len(letter.lower()) == 1  # İ's lower case is two characters (i and a dot)
    },
    "ß": "SS",
}

#: The name of the SQL function (a migration creates it from fold_function_sql).
FUNCTION = "crm_fold"


def fold(text: str) -> str:
    """``text`` folded: ``fold("Müller") == fold("mueller") == "MUELLER"``."""
    return "".join(FOLDED.get(letter, letter) for letter in text).upper()


def fold_function_sql() -> str:
    """``CREATE FUNCTION crm_fold(text)``: :func:`fold` in SQL.

    Letters that fold to one letter are one ``translate()``; those that fold
    to two (``Ü`` to ``UE``) a ``replace()`` each. ``IMMUTABLE``, so that an
    index can hold its value; plain SQL, so that the planner inlines it.
    """
    one = {letter: folded for letter, folded in FOLDED.items() if len(folded) == 1}
    expression = "$1"
    for letter, folded in FOLDED.items():
        if len(folded) > 1:
            expression = f"replace({expression}, '{letter}', '{folded}')"
    expression = f"translate({expression}, '{''.join(one)}', '{''.join(one.values())}')"
    return (
        f"CREATE OR REPLACE FUNCTION {FUNCTION}(text) RETURNS text "
        f"LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE "
        f"AS $$ SELECT upper({expression}) $$"
    )
