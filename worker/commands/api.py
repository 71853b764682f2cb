"""``idv-worker api ...``: one-off provider calls for operators (configured by ``IDV_*``).

Prints the parsed result as JSON; Base64 images are elided unless ``--show-images``. Exit codes:
0 success, 1 provider or transport error (``idv-worker api <operation>: <Code>: <Message> (HTTP
<status>, request <id>)`` on stderr), 2 invalid argument (the message names the field).

Rate limiting: these calls go through ``operator_gate``, which today is ``UnlimitedGate`` - an
operator's single call does not take a slot from the workers' Redis limiter, so in the worst
case one worker call meets a ``Throttling.Api`` and is retried by the workers' own policy.
``operator_gate`` is the one place to switch to the shared limiter.
"""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path
from typing import Any

from worker.cloudauth.client import CloudAuthClient
from worker.cloudauth.errors import CloudAuthError, RequestValidationError
from worker.cloudauth.models import WireModel
from worker.commands.output import FAILURE, INVALID, fail
from worker.ratelimit import GateError, RateGate, UnlimitedGate
from worker.settings import Settings, load_settings

IMAGE_KEYS = frozenset({"faceImg", "idImage", "idBackImage"})

# Python argument -> command-line flag, to name the offending flag in validation errors.
_FLAGS = {
    "transaction_id": "--transaction-id",
    "merchant_biz_id": "--merchant-biz-id",
    "merchant_user_id": "--merchant-user-id",
    "product_code": "--product-code",
    "doc_type": "--doc-type",
    "image_base64": "--image",
    "image_url": "--image-url",
    "image_base64/image_url": "--image/--image-url",
    "card_side": "--card-side",
    "id_threshold": "--id-threshold",
    "meta_info": "--meta-info",
    "callback_url": "--callback-url",
    "callback_token": "--callback-token",
    "return_url": "--return-url",
    "scene_code": "--scene-code",
}


def operator_gate(settings: Settings) -> RateGate:
    """The gate for operator calls: unlimited for now (see the module docstring)."""
    return UnlimitedGate()


def elide_images(value: Any, show_images: bool = False) -> Any:
    """Replace Base64 image fields (faceImg, idImage, idBackImage) by ``<elided: N bytes>``."""
    if show_images:
        return value
    if isinstance(value, dict):
        return {
            k: (
                f"<elided: {len(v.encode())} bytes>"
                if k in IMAGE_KEYS and isinstance(v, str)
                else elide_images(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [elide_images(v) for v in value]
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``api check-result``, ``api doc-ocr`` and ``api initialize``."""
    api = subparsers.add_parser("api", help="call the provider API once and print the result")
    ops = api.add_subparsers(dest="api_command", metavar="SUBCOMMAND")
    ops.required = True

    check = ops.add_parser("check-result", help="CheckResult for one transaction")
    check.add_argument("--transaction-id", required=True, metavar="TID")
    check.add_argument("--merchant-biz-id", required=True, metavar="ID")
    check.add_argument(
        "--product-code",
        default=None,
        metavar="CODE",
        help="product whose quota the call uses (default: IDV_ONBOARDING_PRODUCT, else eKYC)",
    )
    check.add_argument("--return-image", action="store_true", help="IsReturnImage=Y")
    check.add_argument("--show-images", action="store_true", help="print Base64 images in full")
    check.set_defaults(handler=_check_result)

    ocr = ops.add_parser("doc-ocr", help="DocOcrV2 on one image (billed)")
    image = ocr.add_mutually_exclusive_group(required=True)
    image.add_argument("--image", type=Path, metavar="FILE", help="JPEG/PNG file, sent as Base64")
    image.add_argument("--image-url", metavar="URL", help="public http(s) URL of the image")
    ocr.add_argument(
        "--doc-type", required=True, metavar="CODE", help="8-digit DocType, e.g. 00000006"
    )
    ocr.add_argument("--merchant-biz-id", required=True, metavar="ID")
    ocr.add_argument("--merchant-user-id", required=True, metavar="ID")
    ocr.add_argument("--spoof", action="store_true", help="Spoof=T")
    ocr.add_argument("--face-quality", action="store_true", help="IdFaceQuality=T")
    ocr.add_argument(
        "--card-side", metavar="SIDE", help="OCR_ID_FACE or OCR_ID_NATIONAL_EMBLEM (00000001 only)"
    )
    ocr.add_argument("--id-threshold", metavar="N", help="0 standard, 1 strict, 2 loose, 3 off")
    ocr.add_argument(
        "--product-code",
        default="ID_OCR_MIN",
        metavar="CODE",
        help="only ID_OCR_MIN is accepted",
    )
    ocr.add_argument(
        "--scene-code", metavar="CODE", help="SceneCode: <= 10 letters, digits or _ (console label)"
    )
    ocr.add_argument("--show-images", action="store_true", help="print Base64 images in full")
    ocr.set_defaults(handler=_doc_ocr)

    init = ops.add_parser("initialize", help="Initialize a verification flow")
    init.add_argument("--product-code", required=True, metavar="CODE")
    init.add_argument("--merchant-biz-id", required=True, metavar="ID")
    init.add_argument("--merchant-user-id", required=True, metavar="ID")
    init.add_argument("--callback-url", metavar="URL")
    init.add_argument("--callback-token", metavar="TOKEN")
    init.add_argument("--return-url", metavar="URL")
    init.add_argument("--doc-type", metavar="CODE")
    init.add_argument("--meta-info", metavar="JSON", help="MetaInfo JSON from the client SDK")
    init.add_argument(
        "--scene-code", metavar="CODE", help="SceneCode: <= 10 letters, digits or _ (console label)"
    )
    init.add_argument("--show-images", action="store_true", help=argparse.SUPPRESS)
    init.set_defaults(handler=_initialize)


def _run(args: argparse.Namespace, call: Any) -> int:
    settings = load_settings()
    try:
        with CloudAuthClient(settings.provider, gate=operator_gate(settings)) as client:
            result: WireModel = call(client, settings)
    except RequestValidationError as exc:
        flag = _FLAGS.get(exc.python_name, exc.python_name)
        label = f"{flag} ({exc.field})" if flag else exc.field
        return fail(args, f"invalid {label}: {exc.reason}", INVALID)
    except (CloudAuthError, GateError) as exc:
        return fail(args, str(exc), FAILURE)
    payload = elide_images(result.wire(), args.show_images)
    print(json.dumps(payload, ensure_ascii=False, indent=2))
    return 0


def _check_result(args: argparse.Namespace) -> int:
    def call(client: CloudAuthClient, settings: Settings) -> WireModel:
        product = args.product_code or getattr(settings, "onboarding_product", None) or "eKYC"
        return client.check_result(
            transaction_id=args.transaction_id,
            merchant_biz_id=args.merchant_biz_id,
            product_code=product,
            is_return_image=args.return_image,
        )

    return _run(args, call)


def _doc_ocr(args: argparse.Namespace) -> int:
    image_base64: str | None = None
    if args.image is not None:
        try:
            image_base64 = base64.b64encode(args.image.read_bytes()).decode("ascii")
        except OSError as exc:
            return fail(args, f"invalid --image: cannot read file ({exc.strerror})", INVALID)

    def call(client: CloudAuthClient, settings: Settings) -> WireModel:
        return client.doc_ocr_v2(
            merchant_biz_id=args.merchant_biz_id,
            merchant_user_id=args.merchant_user_id,
            doc_type=args.doc_type,
            image_base64=image_base64,
            image_url=args.image_url,
            card_side=args.card_side,
            spoof=args.spoof,
            face_quality=args.face_quality,
            id_threshold=args.id_threshold,
            product_code=args.product_code,
            scene_code=args.scene_code,
        )

    return _run(args, call)


def _initialize(args: argparse.Namespace) -> int:
    def call(client: CloudAuthClient, settings: Settings) -> WireModel:
        return client.initialize(
            product_code=args.product_code,
            merchant_biz_id=args.merchant_biz_id,
            merchant_user_id=args.merchant_user_id,
            meta_info=args.meta_info,
            doc_type=args.doc_type,
            callback_url=args.callback_url,
            callback_token=args.callback_token,
            return_url=args.return_url,
            scene_code=args.scene_code,
        )

    return _run(args, call)
