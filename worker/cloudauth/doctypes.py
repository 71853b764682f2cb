"""The 8-digit DocType codes of ID_OCR / ID_OCR_MIN (DocOcrV2) and the OCR fields of each.

Source: the DocOcrV2 document-type list and OCR field tables (seed 002) and the CheckResult
ID-OCR field tables (seed 000). The eKYC_PRO / ID_OCR_MAX alphanumeric family (``GLB03002``...)
is a different list and is not accepted by DocOcrV2.

Spelling of the Macao ID and Taiwan permit codes: the English and Chinese pages print
``000000011`` and ``000000012`` (nine digits) while the same pages call DocType "an 8-digit
identifier" and the Japanese page prints ``00000011`` / ``00000012``. Both spellings are accepted
as aliases of one document type, and the client sends exactly the spelling it was given (it does
not rewrite a caller's value into a guess); ``DOC_TYPES`` is keyed by the spelling printed in the
DocOcrV2 list.

The emulator keeps its own table (``worker.emulator.doctypes``) on purpose: it stands in for the
provider, and a table shared by both sides would let one wrong code pass on both.
"""

from __future__ import annotations

from dataclasses import dataclass

MAINLAND_ID = "00000001"

_HK_ID_FIELDS = (
    "name",
    "englishName",
    "nameCode",
    "sex",
    "birthDate",
    "idNumber",
    "currentIssueDate",
    "firstIssueDate",
    "isPermanent",
    "symbols",
)
_PERMIT_FIELDS = (
    "name",
    "englishName",
    "sex",
    "birthDate",
    "idNumber",
    "issueDate",
    "expiryDate",
    "originOfIssue",
)


@dataclass(frozen=True, slots=True)
class DocType:
    """One document type: its code, its name and the ``ocrIdInfo`` fields OCR returns for it."""

    code: str
    name: str
    ocr_fields: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    back_fields: tuple[str, ...] = ()
    """Fields of ``ocrIdBackInfo`` when the back side (``OCR_ID_NATIONAL_EMBLEM``) is read."""

    @property
    def has_card_side(self) -> bool:
        """Whether ``CardSide`` applies (only the mainland resident identity card)."""
        return bool(self.back_fields)


DOC_TYPES: dict[str, DocType] = {
    d.code: d
    for d in (
        DocType(
            "01000000",
            "Global e-passport (ICAO MRZ)",
            (
                "surname",
                "givenname",
                "sex",
                "birthDate",
                "passportNo",
                "nationality",
                "expiryDate",
                "countryCode",
            ),
        ),
        DocType("00000006", "Hong Kong identity card (2003)", _HK_ID_FIELDS),
        DocType("00000008", "Hong Kong identity card (2018)", _HK_ID_FIELDS),
        DocType(
            "00000007",
            "Exit-entry permit for Hong Kong and Macao",
            (*_PERMIT_FIELDS, "placeOfIssue"),
        ),
        DocType(
            "00000009", "Mainland travel permit for Hong Kong and Macao residents", _PERMIT_FIELDS
        ),
        DocType(
            "000000011",
            "Macao resident identity card",
            (
                "surnameCN",
                "givennameCN",
                "surname",
                "givenname",
                "sex",
                "birthDate",
                "idNumber",
                "expiryDate",
                "placeOfBirth",
            ),
            aliases=("00000011",),
        ),
        DocType(
            "000000012",
            "Mainland travel permit for Taiwan residents",
            (*_PERMIT_FIELDS, "placeOfIssue"),
            aliases=("00000012",),
        ),
        DocType(
            MAINLAND_ID,
            "Resident identity card of the Chinese mainland",
            (
                "name",
                "sex",
                "ethnicity",
                "birthDate",
                "idNumber",
                "address",
                "province",
                "city",
                "originOfIssue",
                "issueDate",
                "expiryDate",
            ),
            back_fields=("originOfIssue", "issueDate", "expireDate"),
        ),
    )
}

_BY_ANY_SPELLING: dict[str, DocType] = {
    **{alias: d for d in DOC_TYPES.values() for alias in d.aliases},
    **DOC_TYPES,
}


def lookup_doc_type(code: str) -> DocType | None:
    """The document type for a code in any accepted spelling, or None if unknown."""
    return _BY_ANY_SPELLING.get(code)


def known_doc_type_codes() -> tuple[str, ...]:
    """Every accepted spelling, canonical codes first (for messages and CLI choices)."""
    aliases = tuple(a for d in DOC_TYPES.values() for a in d.aliases)
    return (*DOC_TYPES, *aliases)
