"""Notebook displays, drawn with Pillow (no matplotlib):

* :func:`prediction_png` / :func:`prediction_html`: a classification row
  (:class:`mobilevit.predictor.Prediction`) as the image beside a bar chart of its top-k;
* :func:`segmentation_png` / :func:`segmentation_html`: a
  :class:`mobilevit.predictor.Segmentation` as the mask over the image with a legend;
* :func:`model_summary`: a model's stages, output shapes, parameters and kernel path, as
  text (``print(model.summary())``) and as an HTML table (``model`` in a notebook).

The classes in :mod:`mobilevit.predictor` and :class:`mobilevit.MobileViT` call these from
their ``_repr_png_`` / ``_repr_html_``; nothing here is imported by ``import mobilevit``.
"""
from __future__ import annotations

import base64
import html
import io
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["palette", "prediction_image", "prediction_png", "prediction_html", "segmentation_image",
           "segmentation_png", "segmentation_html", "model_summary", "Summary"]

THUMB = 192          # the picture's box in a prediction card (pixels)
ROW_H = 22           # one bar of the chart
BAR_W = 150          # a score of 1.0
LABEL_W = 110        # room for the class name
MAX_SEG_SIDE = 512   # a segmentation display is scaled down to this


def palette() -> List[int]:
    """The PASCAL VOC colour map (bit-interleaved label index), 256 RGB triples flattened, as
    ``PIL.Image.putpalette`` takes it."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def _font():
    return ImageFont.load_default()


def _fit(img: Image.Image, side: int) -> Image.Image:
    scale = min(side / img.width, side / img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.NEAREST if scale >= 2 else Image.BILINEAR)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _image_of(obj) -> Optional[Image.Image]:
    img = getattr(obj, "image", None)
    if img is None:
        path = obj.get("path") if isinstance(obj, dict) else getattr(obj, "path", None)
        if path and os.path.exists(path):   # rows of Predictor.predict(paths): open for display
            try:
                from .imageio import load_image
                img = load_image(path)
            except Exception:
                img = None
    return img


def prediction_image(row) -> Image.Image:
    """A prediction row as a picture: the image (left, fitted into 192x192; grey when the
    row has none) and one bar per top-k class with its name and probability."""
    font = _font()
    labels, scores = list(row.get("labels") or []), list(row.get("scores") or [])
    title = os.path.basename(row.get("path") or "") or f"input #{row.get('index', 0)}"
    if getattr(row, "labels_assumed", False):      # the checkpoint had no names: say so on the picture
        title = _clip(title, 22) + " (ImageNet names assumed)"
    height = max(THUMB, 24 + ROW_H * max(1, len(labels)) + 8)
    card = Image.new("RGB", (THUMB + 16 + LABEL_W + BAR_W + 60, height + 16), "white")
    img = _image_of(row)
    if img is not None:
        t = _fit(img.convert("RGB"), THUMB)
        card.paste(t, (8 + (THUMB - t.width) // 2, 8 + (height - t.height) // 2))
    else:
        ImageDraw.Draw(card).rectangle([8, 8, 8 + THUMB, 8 + THUMB], fill=(230, 230, 230))
    d = ImageDraw.Draw(card)
    x0 = THUMB + 16
    d.text((x0, 8), _clip(title, 48), fill="black", font=font)
    if row.get("error"):
        msg = str(row["error"])
        for i in range(0, min(len(msg), 6 * 44), 44):
            d.text((x0, 30 + (i // 44) * 14), msg[i:i + 44], fill=(180, 0, 0), font=font)
        return card
    for i, (label, score) in enumerate(zip(labels, scores)):
        y = 30 + i * ROW_H
        d.text((x0, y + 3), _clip(str(label), 24), fill="black", font=font)
        w = max(1, round(BAR_W * float(score)))
        d.rectangle([x0 + LABEL_W, y + 2, x0 + LABEL_W + w, y + ROW_H - 4],
                    fill=(31, 119, 180) if i == 0 else (158, 196, 224))
        d.text((x0 + LABEL_W + w + 4, y + 3), f"{float(score):.1%}", fill="black", font=font)
    return card


def prediction_png(row) -> bytes:
    """:func:`prediction_image` as PNG bytes (``_repr_png_``)."""
    return _png(prediction_image(row))


def _img_tag(png: bytes, alt: str) -> str:
    return (f'<img src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" '
            f'alt="{html.escape(alt)}"/>')


def prediction_html(row) -> str:
    """A prediction row as HTML: the picture of :func:`prediction_image` (alt text: the
    top-1 label and score, or the error)."""
    if row.get("error"):
        alt = f"error: {row['error']}"
    elif row.get("labels"):
        alt = f"{row['labels'][0]} ({row['scores'][0]:.1%})"
    else:
        alt = "no prediction"
    return _img_tag(prediction_png(row), alt)


def segmentation_image(seg, alpha: float = 0.5) -> Image.Image:
    """A segmentation result as a picture: the mask in the VOC palette blended over the image
    (``alpha`` the mask's weight), scaled to at most 512 pixels a side, with a legend of the
    classes present (largest first, their share of the pixels)."""
    font = _font()
    if seg.mask is None:
        card = Image.new("RGB", (420, 60), "white")
        ImageDraw.Draw(card).text((8, 8), _clip(f"error: {seg.error}", 70), fill=(180, 0, 0), font=font)
        return card
    colour = Image.fromarray(seg.mask.astype(np.uint8), mode="P")
    colour.putpalette(palette())
    colour = colour.convert("RGB")
    if seg.image is not None and seg.image.size == colour.size:
        view = Image.blend(seg.image.convert("RGB"), colour, alpha)
    else:
        view = colour
    if max(view.size) > MAX_SEG_SIDE or max(view.size) < 256:   # small images: enlarged to be seen
        view = _fit(view, MAX_SEG_SIDE if max(view.size) > MAX_SEG_SIDE else 256)
    areas = list(seg.areas().items())[:12]
    pal = palette()
    names = {n: i for i, n in enumerate(seg.class_names)}
    card = Image.new("RGB", (view.width + 200, max(view.height, 16 + 18 * len(areas)) + 16), "white")
    card.paste(view, (8, 8))
    d = ImageDraw.Draw(card)
    for i, (name, frac) in enumerate(areas):
        c = names.get(name, int(name) if str(name).isdigit() else 0)
        y = 8 + 18 * i
        d.rectangle([view.width + 16, y, view.width + 30, y + 14], fill=tuple(pal[3 * c:3 * c + 3]), outline="black")
        d.text((view.width + 36, y + 1), f"{_clip(str(name), 18)} {frac:.0%}", fill="black", font=font)
    return card


def segmentation_png(seg) -> bytes:
    """:func:`segmentation_image` as PNG bytes (``_repr_png_``)."""
    return _png(segmentation_image(seg))


def segmentation_html(seg) -> str:
    """:func:`segmentation_image` as an HTML ``<img>`` (alt text: the classes present)."""
    alt = seg.error or ", ".join(f"{k} {v:.0%}" for k, v in list(seg.areas().items())[:5])
    return _img_tag(segmentation_png(seg), alt)


# ---------------------------------------------------------------------------------------------
# model summary
# ---------------------------------------------------------------------------------------------
class Summary:
    """A model summary table: ``str()`` / ``repr()`` give the text, ``_repr_html_`` the HTML
    table; ``rows`` holds (stage, module, output shape, reduction, parameters) tuples."""

    def __init__(self, title: str, header: Sequence[str], rows: List[Tuple], footer: str):
        self.title, self.header, self.rows, self.footer = title, tuple(header), rows, footer

    def __str__(self):
        cells = [self.header] + [tuple(str(c) for c in r) for r in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.header))]
        right = {2, 3, 4}
        lines = [self.title]
        for j, r in enumerate(cells):
            lines.append("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
            if j == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append(self.footer)
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self):
        e = html.escape
        head = "".join(f"<th>{e(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in self.rows)
        return (f"<div><b>{e(self.title)}</b><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
                f"</table><small>{e(self.footer)}</small></div>")


def _shape(a) -> str:
    return " x ".join(str(int(s)) for s in a.shape[1:])


def model_summary(model, input_size: Optional[Tuple[int, int]] = None) -> Summary:
    """The stages of ``model`` (stem, stages 0-4, final conv, head) with their output shapes
    for one ``input_size`` image (default: the checkpoint's preprocessing output, else
    256x256; the shapes are measured by running the network once on zeros), reduction and
    parameter count, plus the total, the kernel path (ISA) and the thread count."""
    from . import _C
    cfg = model.cfg
    if input_size is None:
        try:
            from .predictor import preset_for
            input_size = tuple(preset_for(model).output_size or (256, 256))
        except Exception:
            input_size = (256, 256)
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    x = np.zeros((1, cfg.in_channels, h, w), np.float32)
    counts: dict = {}
    for k, v in model.params.items():
        if k.endswith(("running_mean", "running_var")):   # buffers, as model.num_parameters() counts
            continue
        parts = k.split(".")
        key = ".".join(parts[:2]) if parts[0] == "stages" else parts[0]
        counts[key] = counts.get(key, 0) + int(v.size)
    stages = model.forward_features(x)   # shapes as run, including MobileViTv2's odd-size rule
    red = [2, 4, 8, min(16, cfg.output_stride), min(32, cfg.output_stride)]
    block = "MobileViTv2" if cfg.version == 2 else "MobileViT"
    mods = [f"MV2 x{len(cfg.layer1)}", f"MV2 x{len(cfg.layer2)}"]
    for b in cfg.blocks:
        extra = f", {b.heads} heads" if cfg.version == 1 else ""
        mods.append(f"MV2 + {block} (d={b.dim}, L={b.depth}{extra})")
    rows = [("stem", "conv 3x3/2 + BN + SiLU", f"{cfg.stem_channels} x {-(-h // 2)} x {-(-w // 2)}", 2,
             counts.pop("stem", 0))]
    for i, (mod, y) in enumerate(zip(mods, stages)):
        rows.append((f"stages.{i}", mod, _shape(y), red[i], counts.pop(f"stages.{i}", 0)))
    last = stages[-1]
    if "final_conv" in counts:
        rows.append(("final_conv", "conv 1x1 + BN + SiLU", f"{cfg.final_channels} x {last.shape[2]} x {last.shape[3]}",
                     red[4], counts.pop("final_conv")))
    if cfg.head == "deeplabv3":
        y = model.forward(x)
        rows.append(("seg_head", f"DeepLabv3 ASPP (rates {', '.join(map(str, cfg.aspp_rates))})", _shape(y),
                     cfg.output_stride, counts.pop("seg_head", 0)))
    elif "head" in counts:
        rows.append(("head", "avg pool + linear", f"{cfg.num_classes}", "", counts.pop("head")))
    for k in sorted(counts):   # anything not named above, so the total adds up
        rows.append((k, "", "", "", counts[k]))
    total = model.num_parameters()
    rows = [(s, m, o, r, f"{p:,}") for s, m, o, r, p in rows]
    title = (f"MobileViT {cfg.name!r}" + (" + DeepLabv3" if cfg.head == "deeplabv3" else "")
             + f": {total / 1e6:.2f} M parameters, {cfg.num_classes} classes, input {cfg.in_channels} x {h} x {w}")
    footer = (f"total {total:,} parameters ({total * 4 / 2**20:.1f} MiB float32); isa {_C.get_isa()!r}; "
              f"threads {_C.get_num_threads()}")
    pc = getattr(model, "pretrained_cfg", None) or {}
    if cfg.head == "deeplabv3" and pc.get("sources"):   # what a loaded checkpoint said and what was assumed
        src = pc["sources"]
        footer += ("\nhead settings: " + ", ".join(
            f"{k}={v} ({src[k]})" for k, v in (("output_stride", cfg.output_stride),
                                               ("aspp_rates", tuple(cfg.aspp_rates)),
                                               ("aspp_channels", cfg.aspp_channels)) if k in src))
        if pc.get("recipe_note"):
            footer += f"\n{pc['recipe_note']}"
    if pc.get("ignored"):
        footer += f"\nignored {len(pc['ignored']['keys'])} tensors: {pc['ignored']['why']}"
    if pc.get("preprocess_source"):
        footer += f"\npreprocessing: {pc['preprocess'].get('name') or 'custom'} ({pc['preprocess_source']})"
    return Summary(title, ("stage", "module", "output (C x H x W)", "reduction", "params"), rows, footer)
