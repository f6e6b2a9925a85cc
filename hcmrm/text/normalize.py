"""Text as every path reads it (queries, video text, labeled data), so "empty" means the same everywhere.

NFKC folds full-width letters and digits to ASCII (as users type both); control characters (Cc)
and format characters (Cf: zero-width spaces and joiners, the BOM, bidi marks, soft hyphens) are
dropped, since they are invisible and the tokenizer drops them anyway; whitespace runs become one
space. A query of only zero-width spaces is then empty, and rejected as such instead of being
scored with no query tokens.
"""

from __future__ import annotations

import re
import unicodedata

DROPPED = frozenset({"Cc", "Cf", "Cs"})  # control, format, lone surrogates (undecodable bytes)
_SPACES = re.compile(r"\s+")

# The same test for Spark SQL's regexp_replace (Java regex): what is left of a blank text is "".
# NFKC never turns a visible character into whitespace or an invisible one, so it can be skipped there.
SPARK_BLANK_PATTERN = r"(?U)[\s\p{Cc}\p{Cf}\p{Cs}]+"


def normalize_text(text: str | None) -> str:
    """NFKC, invisible characters dropped, whitespace collapsed to single spaces and stripped."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text)
    if not text.isprintable():  # the common case (letters, digits, plain spaces) skips the scan
        text = "".join(" " if ch.isspace() else ch for ch in text
                       if ch.isspace() or unicodedata.category(ch) not in DROPPED)
    return _SPACES.sub(" ", text).strip()


def is_blank(text: str | None) -> bool:
    """True when nothing visible is left after normalize_text."""
    return not normalize_text(text)
