"""Document types of ID_OCR / ID_OCR_MIN (8-digit codes, seeds 000 and 002) and their OCR fields.

``derive_fields`` makes a deterministic, synthetic field set for a document from a seed (an image
or transaction hash); every value is invented and carries no real person's data.

Deliberately independent of the client's table (``worker.cloudauth.doctypes``): the emulator
stands in for the provider, and a table shared by both sides would let one wrong code pass on both.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

FACE_SIDE = "OCR_ID_FACE"
EMBLEM_SIDE = "OCR_ID_NATIONAL_EMBLEM"
CARD_SIDES = (FACE_SIDE, EMBLEM_SIDE)
MAINLAND_ID = "00000001"


@dataclass(frozen=True)
class DocTypeSpec:
    """One document type: its title and the ``ocrIdInfo`` field names of each side."""

    code: str
    title: str
    front: tuple[str, ...]
    back: tuple[str, ...] = ()

    def fields_for(self, side: str) -> tuple[str, ...]:
        return self.back if side == EMBLEM_SIDE and self.back else self.front


_HKID = (
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
_PERMIT = ("name", "englishName", "sex", "birthDate", "idNumber", "issueDate", "expiryDate")

DOC_TYPES: dict[str, DocTypeSpec] = {
    spec.code: spec
    for spec in (
        DocTypeSpec("00000006", "HONG KONG IDENTITY CARD", _HKID),
        DocTypeSpec("00000008", "HONG KONG IDENTITY CARD", _HKID),
        DocTypeSpec(
            "00000007",
            "EXIT-ENTRY PERMIT HK & MACAO",
            (*_PERMIT, "placeOfIssue", "originOfIssue"),
        ),
        DocTypeSpec("00000009", "MAINLAND TRAVEL PERMIT HK/MO", (*_PERMIT, "originOfIssue")),
        DocTypeSpec(
            "000000012",
            "MAINLAND TRAVEL PERMIT TAIWAN",
            (*_PERMIT, "originOfIssue", "placeOfIssue"),
        ),
        DocTypeSpec(
            "01000000",
            "PASSPORT",
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
        DocTypeSpec(
            "000000011",
            "MACAO RESIDENT IDENTITY CARD",
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
        ),
        # Seed 002 lists all eleven fields for the portrait side (the default CardSide), the
        # three printed on the emblem side included; the emblem side gives those three.
        DocTypeSpec(
            MAINLAND_ID,
            "RESIDENT IDENTITY CARD",
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
            ("originOfIssue", "issueDate", "expiryDate"),
        ),
    )
}
# Some localized pages print the 9-digit codes with 8 digits.
ALIASES = {"00000012": "000000012", "00000011": "000000011"}

_SURNAMES = ("CHAN", "WONG", "LEE", "CHEUNG", "LAU", "NG", "HO", "LAM", "LI", "ZHANG", "CHEN")
_GIVEN = ("Tai", "Man", "Siu", "Ming", "Ka", "Wai", "Mei", "Ling", "Chi", "Kin", "Yan", "Wing")
_CN = "陈黄李张刘吴何林王杨周郑明华伟芳敏静丽强军"
_PLACES = ("GUANGDONG", "BEIJING", "SHANGHAI", "FUJIAN", "ZHEJIANG")
_COUNTRIES = ("CHN", "HKG", "SGP", "MYS", "GBR", "CAN")
_AUTHORITY = "Exit and Entry Administration, Ministry of Public Security"


def canonical_doc_type(code: str) -> str | None:
    """The known code for ``code`` (aliases resolved), or None if the type is unknown."""
    code = ALIASES.get(code, code)
    return code if code in DOC_TYPES else None


def seed_of(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _date(rng: random.Random, first: int, last: int, compact: bool = False) -> str:
    year, month, day = rng.randint(first, last), rng.randint(1, 12), rng.randint(1, 28)
    return f"{year:04d}{month:02d}{day:02d}" if compact else f"{year:04d}-{month:02d}-{day:02d}"


def hkid_number(rng: random.Random) -> str:
    """A syntactically valid Hong Kong identity card number with its check digit."""
    letter = chr(ord("A") + rng.randint(0, 25))
    digits = "".join(str(rng.randint(0, 9)) for _ in range(6))
    total = 36 * 9 + (ord(letter) - 55) * 8 + sum(int(d) * (7 - i) for i, d in enumerate(digits))
    check = (11 - total % 11) % 11
    return f"{letter}{digits}({'A' if check == 10 else check})"


def mainland_id_number(rng: random.Random, birth: str) -> str:
    """An 18-character mainland ID number (ISO 7064 MOD 11-2 check character)."""
    body = f"{rng.randint(110000, 659000)}{birth.replace('-', '')}{rng.randint(0, 999):03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]
    return body + check


def derive_fields(doc_type: str, card_side: str, seed: bytes) -> dict[str, str]:
    """Deterministic synthetic ``ocrIdInfo`` for ``doc_type``/``card_side`` from ``seed``."""
    spec = DOC_TYPES[canonical_doc_type(doc_type) or doc_type]
    rng = random.Random(seed)
    surname, given = rng.choice(_SURNAMES), f"{rng.choice(_GIVEN)} {rng.choice(_GIVEN)}"
    birth = _date(rng, 1950, 2004)
    sex = rng.choice("MF")
    issue = _date(rng, 2015, 2024)
    expiry = _date(rng, 2026, 2036)
    values: dict[str, str] = {
        "name": f"{surname.title()} {given}",
        "englishName": f"{surname}, {given}",
        "surname": surname,
        "givenname": given.upper(),
        "surnameCN": rng.choice(_CN[:11]),
        "givennameCN": rng.choice(_CN[11:]) + rng.choice(_CN[11:]),
        "sex": sex,
        "birthDate": birth,
        "issueDate": issue,
        "expiryDate": expiry,
        "placeOfIssue": rng.choice(_PLACES),
        "originOfIssue": _AUTHORITY,
        "nationality": rng.choice(_COUNTRIES),
        "countryCode": rng.choice(_COUNTRIES),
        "placeOfBirth": rng.choice(("AS", "MO", "HK", "CN")),
        "passportNo": f"E{rng.randint(10_000_000, 99_999_999)}",
        "ethnicity": "Han",
        "address": f"No. {rng.randint(1, 300)} Renmin Road, Chaoyang District, Beijing",
        "province": "",
        "city": "",
        "nameCode": " ".join(f"{rng.randint(0, 9999):04d}" for _ in range(3)),
        "currentIssueDate": issue,
        "firstIssueDate": f"({rng.randint(1, 12):02d}-{rng.randint(0, 99):02d})",
        "isPermanent": rng.choice("YN"),
        "symbols": rng.choice(("***AZ", "***AZ", "*AZ", "***A")),
    }
    code = spec.code
    if code in ("00000006", "00000008"):
        values["idNumber"] = hkid_number(rng)
    elif code == MAINLAND_ID:
        # The same values on both sides: they describe one card.
        values["idNumber"] = mainland_id_number(rng, birth)
        values["originOfIssue"] = "Chaoyang Public Security Bureau"
        values["issueDate"] = _date(rng, 2015, 2024, compact=True)
        values["expiryDate"] = _date(rng, 2026, 2036, compact=True)
    elif code == "000000011":
        values["idNumber"] = f"{rng.randint(1_000_000, 9_999_999)}({rng.randint(0, 9)})"
    else:
        prefix = {"00000007": "C", "00000009": "H", "000000012": ""}.get(code, "")
        values["idNumber"] = f"{prefix}{rng.randint(10_000_000, 99_999_999)}"
    return {name: values[name] for name in spec.fields_for(card_side)}
