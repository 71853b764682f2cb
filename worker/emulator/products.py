"""What each product's result holds and which (Passed, SubCode) pairs it can give.

From the provider's pages (seeds 000, 001, 002):

- face results (``ExtFaceInfo``) for every product but ``ID_*``; ID results (``ExtIdInfo``) for
  every product but ``FACE_*``; eKYC and the others have both;
- ``Passed=Y`` only with ``SubCode=200``;
- face failures (seed 001): 204 face comparison failed (only where the product compares a
  face: eKYC family, FACE_VERIFY, FACE_COMPARE, FACE_CROSS_COMPARE), 205 liveness risk,
  206 business policy, 233 similar face found;
- ID failures (seeds 000/002): 211 image quality, 212 document spoofing (only when
  anti-spoofing is on: ``IdSpoof=Y`` at Initialize, ``Spoof=T`` for DocOcrV2), 213 document
  type not detected;
- products with both parts may fail either way (their own page is not among the seeds).
"""

from __future__ import annotations

from dataclasses import dataclass

SUCCESS = "200"
FACE_FAILURES = ("204", "205", "206", "233")
ID_FAILURES = ("211", "212", "213")
# Sub codes after which the ID document OCR did not complete successfully.
OCR_FAILED = ("211", "213")
SPOOFED = "212"
COMPARISON_FAILED = "204"
DUPLICATE_FACE = "233"
LIVENESS_RISK = "205"
# Spoof types as each page lists them: CheckResult (seed 000) and DocOcrV2 (seed 002).
CHECK_RESULT_SPOOF_TYPES = ("SCREEN_REMARK", "PHOTO_COPY", "TAMPER")
DOC_OCR_SPOOF_TYPES = (*CHECK_RESULT_SPOOF_TYPES, "SHORTCUT")

_COMPARING = frozenset(
    {
        "eKYC",
        "eKYC_NDI",
        "eKYC_PRO",
        "eKYC_MIN",
        "eKYC_Date_MIN",
        "FACE_VERIFY",
        "FACE_COMPARE",
        "FACE_CROSS_COMPARE",
    }
)


@dataclass(frozen=True)
class ProductSpec:
    """The result parts of one product code and the sub codes it can fail with."""

    code: str
    face: bool
    ids: bool
    compares_faces: bool

    def failures(self) -> tuple[str, ...]:
        codes: list[str] = []
        if self.face:
            codes += [c for c in FACE_FAILURES if c != COMPARISON_FAILED or self.compares_faces]
        if self.ids:
            codes += ID_FAILURES
        return tuple(codes)

    def check_outcome(self, passed: str, sub_code: str, id_spoof: bool) -> str | None:
        """Why ``(passed, sub_code)`` cannot come out of this product's flow; None if it can."""
        if passed == "Y":
            return None if sub_code == SUCCESS else "passed=Y goes only with sub_code 200"
        if sub_code not in self.failures():
            valid = ", ".join(self.failures())
            return f"{self.code} fails with sub_code {valid}, not {sub_code}"
        if sub_code == SPOOFED and not id_spoof:
            return "sub_code 212 needs ID anti-spoofing: create the flow with id_spoof (IdSpoof=Y)"
        return None

    def default_failure(self) -> str:
        return LIVENESS_RISK if self.face else "211"


def product(code: str) -> ProductSpec:
    return ProductSpec(
        code=code,
        face=not code.startswith("ID_"),
        ids=not code.startswith("FACE_"),
        compares_faces=code in _COMPARING,
    )
