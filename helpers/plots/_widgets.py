"""What makes the explorer work the same on ipywidgets 7.x and 8.x, and without a kernel; and
how its picture is made (JPEG from matplotlib's Agg canvas, a title that fits in two lines).

Part of :mod:`helpers.plots.explorer`. ``FileUpload.value`` differs (a dict by file name in 7.x,
a tuple of dicts in 8.x: :func:`uploaded_files` reads both), and only 8.x widgets have
``_repr_mimebundle_`` (:func:`mimebundle` builds the bundle itself for 7.x). The bundle also
holds a ``text/html`` fallback, the current picture and :data:`KERNEL_GONE`, which a front end
shows when it cannot render a live widget (a saved notebook opened without a kernel).
"""

from __future__ import annotations

import base64
import html
import io
import textwrap
from typing import Any

import numpy as np

__all__ = ["KERNEL_GONE", "KERNEL_HINT", "fallback_html", "jpeg", "mimebundle", "two_lines", "uploaded_files"]

#: What the explorer's saved output says when no kernel is behind it (its ``text/html`` fallback).
KERNEL_GONE = "The kernel behind this explorer is not running: rerun the cell to move the sliders again."
#: The line always shown under the picture: after a kernel restart the front end keeps the
#: sliders, and they move, but nothing answers them; this is the only word a reader then sees.
KERNEL_HINT = (f'<span style="color: #666; font-size: 85%">If the sliders stop changing the picture: '
               f"{html.escape(KERNEL_GONE[0].lower() + KERNEL_GONE[1:])}</span>")


def uploaded_files(value: Any) -> list[tuple[str, bytes]]:
    """``[(file name, content bytes)]`` from a ``FileUpload.value`` of ipywidgets 7.x or 8.x.

    Introduced in notebook 03. ipywidgets 8: a tuple of dicts with ``name`` and ``content`` (a
    ``memoryview``). ipywidgets 7: a dict ``{name: {"metadata": {...}, "content": bytes}}``.
    """
    if not value:
        return []
    if isinstance(value, dict):  # ipywidgets 7.x
        entries = [(str(name), entry["content"]) for name, entry in value.items()]
    elif isinstance(value, (list, tuple)):  # ipywidgets 8.x
        entries = [(str(entry["name"]), entry["content"]) for entry in value]
    else:
        raise TypeError(f"unexpected FileUpload value: {type(value).__name__}")
    return [(name, bytes(content)) for name, content in entries]


def fallback_html(jpeg: bytes, size: tuple[int, int], alt: str) -> str:
    """The picture (JPEG bytes, shown at ``size`` = (width, height)) and :data:`KERNEL_GONE`."""
    picture = base64.b64encode(jpeg).decode("ascii")
    width, height = size
    return (
        f'<div class="gap-cam-explorer-fallback"><img src="data:image/jpeg;base64,{picture}" '
        f'width="{width}" height="{height}" alt="{html.escape(alt)}"/>'
        f"<p><em>{html.escape(KERNEL_GONE)}</em></p></div>"
    )


def mimebundle(widget: Any, text: str, fallback: str, **kwargs: Any) -> dict[str, Any]:
    """The widget's view (ipywidgets 7.x and 8.x alike), with ``text`` and ``fallback`` (HTML)
    for front ends that cannot show a live widget."""
    bundle: dict[str, Any] = {}
    if hasattr(widget, "_repr_mimebundle_"):  # ipywidgets 8
        bundle.update(widget._repr_mimebundle_(**kwargs) or {})
    elif widget._view_name is not None:  # ipywidgets 7: what its _ipython_display_ sends
        bundle["application/vnd.jupyter.widget-view+json"] = {
            "version_major": 2, "version_minor": 0, "model_id": widget._model_id,
        }
        # Not **kwargs: IPython passes include= and exclude=, which the callbacks of 7.x
        # (Box._fire_children_displayed) do not take; the kernel showed a TypeError.
        widget._handle_displayed()
    bundle["text/plain"] = text
    bundle["text/html"] = fallback
    return bundle


def jpeg(canvas: Any) -> bytes:
    """Draw a matplotlib Agg canvas and encode it as JPEG: a photo with a heat map compresses
    several times smaller than PNG, and encodes faster."""
    from PIL import Image

    canvas.draw()
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3]).save(buffer, format="jpeg", quality=85)
    return buffer.getvalue()


def two_lines(text: str, width: int) -> str:
    """``text`` wrapped to exactly two lines of at most ``width`` characters (the second may be
    empty; a longer text ends in "…"), so that a title never changes the figure's layout."""
    lines = textwrap.wrap(text, width) or [""]
    if len(lines) > 2:
        lines = [lines[0], lines[1][: width - 1] + "…"]
    return "\n".join(lines) if len(lines) == 2 else lines[0] + "\n"
