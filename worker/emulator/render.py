"""Synthetic pictures with Pillow: card-like ID documents and face portraits.

A card template (background, title, labels, portrait) is drawn once per document type and side;
each picture copies it and draws only the values, so thousands render per second.
"""

from __future__ import annotations

import io
import random
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from worker.emulator.doctypes import DOC_TYPES, EMBLEM_SIDE, canonical_doc_type
from worker.emulator.imagecheck import EMBED_KEY

CARD_SIZE = (640, 404)
# Palette indexes of the card pictures (mode "P" keeps copies and PNG encoding cheap).
_PALETTE = [
    (246, 243, 235),  # 0 background
    (27, 61, 110),  # 1 header band
    (255, 255, 255),  # 2 header text
    (90, 90, 90),  # 3 labels
    (15, 15, 15),  # 4 values
    (200, 214, 230),  # 5 portrait background
    (150, 120, 100),  # 6 portrait
    (210, 190, 150),  # 7 guilloche
]
_FLAT_PALETTE = [c for rgb in _PALETTE for c in rgb] + [0] * (768 - 3 * len(_PALETTE))
_DRAWN_LIMIT = 7


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _drawable(value: str) -> bool:
    return value.isascii() and bool(value)


def _label(name: str) -> str:
    out = "".join(" " + c if c.isupper() else c for c in name)
    return out.strip().upper()


@lru_cache(maxsize=32)
def _template(doc_type: str, side: str, names: tuple[str, ...]) -> Image.Image:
    spec = DOC_TYPES[doc_type]
    img = Image.new("P", CARD_SIZE, 0)
    img.putpalette(_FLAT_PALETTE)
    draw = ImageDraw.Draw(img)
    width, height = CARD_SIZE
    for y in range(70, height, 18):
        draw.line([(0, y), (width, y + 40)], fill=7)
    draw.rectangle([0, 0, width, 56], fill=1)
    title = spec.title + (" (BACK)" if side == EMBLEM_SIDE else "")
    draw.text((20, 14), title, font=_font(26), fill=2)
    if side != EMBLEM_SIDE:
        draw.rectangle([470, 80, 610, 250], fill=5)
        draw.ellipse([505, 105, 575, 185], fill=6)
        draw.pieslice([480, 180, 600, 320], 180, 360, fill=6)
    small = _font(13)
    for row, name in enumerate(names):
        draw.text((24, 74 + row * 44), _label(name), font=small, fill=3)
    return img


def render_card(
    doc_type: str,
    side: str,
    fields: dict[str, str],
    fmt: str = "jpeg",
    embedded: str | None = None,
) -> bytes:
    """Encode a card picture showing ``fields``; ``embedded`` JSON goes in a tEXt/COM segment."""
    code = canonical_doc_type(doc_type) or doc_type
    names = tuple(n for n, v in fields.items() if _drawable(v))[:_DRAWN_LIMIT]
    img = _template(code, side, names).copy()
    draw = ImageDraw.Draw(img)
    font = _font(20)
    for row, name in enumerate(names):
        draw.text((24, 90 + row * 44), fields[name], font=font, fill=4)
    out = io.BytesIO()
    if fmt == "png":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        if embedded is not None:
            info.add_text(EMBED_KEY, embedded)
        img.save(out, "PNG", compress_level=1, pnginfo=info)
    else:
        comment = (EMBED_KEY + ":" + embedded).encode() if embedded is not None else b""
        img.convert("RGB").save(out, "JPEG", quality=80, comment=comment)
    return out.getvalue()


def render_face(seed: bytes, size: tuple[int, int] = (240, 320)) -> bytes:
    """A deterministic cartoon portrait (JPEG) for ``seed``."""
    rng = random.Random(seed)
    width, height = size
    background = tuple(rng.randint(150, 235) for _ in range(3))
    skin = rng.choice(((241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36)))
    hair = rng.choice(((40, 30, 20), (90, 60, 30), (20, 20, 20), (120, 100, 80)))
    img = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(img)
    cx, cy = width // 2, int(height * 0.42)
    draw.pieslice([cx - 100, int(height * 0.72), cx + 100, height + 120], 180, 360, fill=hair)
    draw.ellipse([cx - 62, cy - 80, cx + 62, cy + 80], fill=skin)
    draw.chord([cx - 66, cy - 92, cx + 66, cy + 10], 180, 360, fill=hair)
    for dx in (-26, 26):
        draw.ellipse([cx + dx - 8, cy - 10, cx + dx + 8, cy + 2], fill=(255, 255, 255))
        draw.ellipse([cx + dx - 4, cy - 8, cx + dx + 4, cy], fill=(30, 30, 30))
    draw.arc([cx - 24, cy + 20, cx + 24, cy + 50], 20, 160, fill=(120, 40, 40), width=3)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()
