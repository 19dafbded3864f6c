"""The typed tokens that stand in for protected health information (PHI).

MIMIC's de-identification placeholders (``[**...**]``) and the scrubber's findings are both replaced by
one of these, so the model sees a consistent symbol for each kind of identifier. The tokenizer keeps
each as a single user-defined SentencePiece piece, so they survive tokenization intact.
"""

from __future__ import annotations

DATE = "[DATE]"
NAME = "[NAME]"
HOSPITAL = "[HOSPITAL]"
LOCATION = "[LOCATION]"
PHONE = "[PHONE]"
EMAIL = "[EMAIL]"
URL = "[URL]"
ID = "[ID]"
AGE = "[AGE]"
CONTACT = "[CONTACT]"
OTHER = "[PHI]"

PHI_TOKENS: tuple[str, ...] = (DATE, NAME, HOSPITAL, LOCATION, PHONE, EMAIL, URL, ID, AGE, CONTACT, OTHER)
