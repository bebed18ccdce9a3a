"""QR codes as inline SVG, drawn by the ``qrcode`` package (no image files, no network)."""

from __future__ import annotations

import io

import qrcode
import qrcode.image.svg


def qr_svg(data: str, *, title: str = "QR code") -> str:
    """An ``<svg>`` element drawing ``data`` as a QR code, labelled for screen readers."""
    image = qrcode.make(
        data,
        image_factory=qrcode.image.svg.SvgPathImage,
        error_correction=qrcode.constants.ERROR_CORRECT_M,
        box_size=10,
        border=4,
    )
    buffer = io.BytesIO()
    image.save(buffer)
    svg = buffer.getvalue().decode()
    svg = svg[svg.index("<svg") :]
    # Label the image and give it a white background so phone cameras read it on dark screens
    # (a white rectangle under the code: a style attribute would need the CSP to allow it).
    label = title.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{label}" ', 1)
    opening_end = svg.index(">") + 1
    return svg[:opening_end] + '<rect width="100%" height="100%" fill="#fff"/>' + svg[opening_end:]
