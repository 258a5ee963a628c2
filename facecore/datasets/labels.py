"""Label files at the edge of facecore: labelme JSON and labelImg / Pascal VOC XML.

Inside facecore a label is an ``ImageLabel``: the image size in pixels and its face boxes
as float32 normalized ``[x1, y1, x2, y2]`` (N, 4). N == 0 means the image holds no face.
Every label name ("face", "Face", "me", ...) counts as a face: the product detects one class.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

import numpy as np

from .. import boxes as B
from ..errors import ImageReadError, LabelFormatError
from ..images import read_image_header
from ..io import atomic_write_text

LABEL_EXTS = (".json", ".xml")
LABELME_VERSION = "5.0.1"


@dataclass(frozen=True)
class ImageLabel:
    """Face boxes of one image. ``boxes``: float32 (N, 4) normalized ``[x1, y1, x2, y2]``.
    ``proposed_by``: per box, the detector whose proposal it is, accepted unchanged (``""``: drawn or
    moved by a person); empty when not recorded (labelme's shape key ``"proposed_by"``; VOC has none)."""

    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: B.EMPTY.copy())
    proposed_by: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "boxes", B.order_corners(self.boxes))
        by = tuple(str(s or "") for s in self.proposed_by)
        if by and len(by) != len(self.boxes):
            raise ValueError(f"proposed_by names {len(by)} box(es), the label has {len(self.boxes)}")
        object.__setattr__(self, "proposed_by", by if any(by) else ())

    @property
    def has_face(self) -> bool:
        return len(self.boxes) > 0

    def pixel_boxes(self) -> np.ndarray:
        """Boxes in pixels, float32 (N, 4)."""
        return B.to_pixels(self.boxes, self.width, self.height)


def image_name(image_path: str) -> str:
    """File name from a labelme ``imagePath`` written on Windows (``..\\images\\a.jpg``) or POSIX."""
    return PureWindowsPath(image_path).name if "\\" in image_path else Path(image_path).name


# Bounds for what a label may declare: sizes beyond the image limit, or coordinates this far out,
# are typos or attacks (1e39 would become float32 infinity).
MAX_LABEL_BYTES = 64 * 1024**2
MAX_COORD = 1e6
MAX_SIDE = 20_000  # = facecore.images.MAX_IMAGE_SIDE
FACE_SHAPES = ("rectangle", "polygon", "circle")
MAX_SHAPES = 10_000  # boxes per label (a hostile file of a million would take minutes to read)
MAX_POINTS = 10_000  # points per shape
# A label whose image size has another width/height ratio than the photo (by more than this share) was
# made for another image: rescaling its boxes would put them in the wrong place.
ASPECT_TOLERANCE = 0.02


def _fail(path, what: str):
    raise LabelFormatError(f"{path}: {what}")


def _num(path, value, what: str, text_ok: bool = False) -> float:
    # JSON true/false are ints to Python: refuse them, and text where JSON must hold a number
    if isinstance(value, bool) or (isinstance(value, str) and not text_ok):
        _fail(path, f"{what} is not a number ({value!r})")
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        _fail(path, f"{what} is not a number ({str(value)[:40]!r})")
    if not np.isfinite(out):
        _fail(path, f"{what} is not finite ({value!r})")
    if abs(out) > MAX_COORD:
        _fail(path, f"{what} is {out:g}, far outside any image (limit {MAX_COORD:g})")
    return out


def _size(path, w, h, text_ok: bool = False) -> tuple[int, int]:
    w, h = int(_num(path, w, "image width", text_ok)), int(_num(path, h, "image height", text_ok))
    if w <= 0 or h <= 0:
        _fail(path, f"image size must be positive, got {w}x{h}")
    if max(w, h) > MAX_SIDE:
        _fail(path, f"image size {w}x{h} is over the limit of {MAX_SIDE} pixels per side")
    return w, h


def _shape_box(path, i: int, kind: str, pts) -> list[float]:
    if isinstance(pts, list) and len(pts) > MAX_POINTS:
        _fail(path, f"shape {i} ({kind}) has {len(pts)} points, over the limit of {MAX_POINTS}")
    if not isinstance(pts, list) or len(pts) < 2 or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pts):
        _fail(path, f"shape {i} ({kind}) needs at least two [x, y] points, got {str(pts)[:80]}")
    arr = np.array([[_num(path, v, f"shape {i} point") for v in p] for p in pts], np.float64)
    if kind == "circle":  # labelme: the centre and one point on the circle
        r = float(np.hypot(*(arr[1] - arr[0])))
        return [arr[0, 0] - r, arr[0, 1] - r, arr[0, 0] + r, arr[0, 1] + r]
    return [arr[:, 0].min(), arr[:, 1].min(), arr[:, 0].max(), arr[:, 1].max()]


def parse_labelme(data, path="labelme JSON", image_size: tuple[int, int] | None = None,
                  notes: list[str] | None = None) -> ImageLabel:
    """Parse a decoded labelme document (dict). ``image_size`` (w, h) is used when the file lacks it.

    Rectangles (two corners, any order), polygons (their bounding box) and circles (their bounding
    square) are faces. Other shapes (points, lines) cannot be a face box: a file holding only those is
    refused (it is not a reviewed no-face label); beside face shapes they are skipped with a line in
    ``notes``. A missing ``shapes`` list is refused too.
    """
    if not isinstance(data, dict):
        _fail(path, "not a labelme file (the top level must be a JSON object)")
    w, h = data.get("imageWidth"), data.get("imageHeight")
    if w is None or h is None:
        if image_size is None:
            _fail(path, "imageWidth/imageHeight missing and the image size is unknown")
        w, h = image_size
    w, h = _size(path, w, h)
    if "shapes" not in data:
        _fail(path, "no 'shapes' list (a labelme file lists its boxes there; an empty list marks a photo "
                    "without a face)")
    shapes = data["shapes"]
    if not isinstance(shapes, list):
        _fail(path, "'shapes' must be a list")
    if len(shapes) > MAX_SHAPES:
        _fail(path, f"{len(shapes)} shapes is over the limit of {MAX_SHAPES} per label")
    px, other, by = [], {}, []
    for i, shape in enumerate(shapes):
        if not isinstance(shape, dict):
            _fail(path, f"shape {i} is not an object")
        kind = shape.get("shape_type") or "rectangle"
        if kind not in FACE_SHAPES:
            other[str(kind)[:20]] = other.get(str(kind)[:20], 0) + 1
            continue
        px.append(_shape_box(path, i, kind, shape.get("points")))
        source = shape.get("proposed_by")  # facecore's own key: a detector's proposal, accepted unchanged
        by.append(source[:200] if isinstance(source, str) else "")
    if other:
        what = ", ".join(f"{n} {k}" for k, n in other.items())
        if not px:
            _fail(path, f"holds only {what} shape(s), which cannot mark a face: draw a rectangle around each "
                        f"face (an empty 'shapes' list marks a photo without a face)")
        if notes is not None:
            notes.append(f"{path}: ignored {what} shape(s); only rectangles, polygons and circles are faces")
    boxes = B.from_pixels(np.asarray(px, np.float32), w, h) if px else B.EMPTY.copy()
    return ImageLabel(w, h, _sane_boxes(path, boxes, w, h, notes), tuple(by))


def _sane_boxes(path, boxes: np.ndarray, w: int, h: int, notes: list[str] | None) -> np.ndarray:
    """The one rule for boxes at the edge (every reader goes through it: import, pages, CLI, training):
    a box wholly outside the ``w`` x ``h`` image or under a pixel wide or high cannot be a face and the
    label is refused (LabelFormatError naming the box); a box reaching past the edge is clipped to it,
    with a line in ``notes``."""
    if not len(boxes):
        return boxes
    b = B.order_corners(boxes)
    px = B.to_pixels(b, w, h).astype(np.float64)
    flat = np.flatnonzero((px[:, 2] - px[:, 0] < 1) | (px[:, 3] - px[:, 1] < 1))
    if len(flat):
        _fail(path, f"box {_which(flat)} has no area (under a pixel wide or high): it cannot mark a face; "
                    f"delete it or draw it around the face")
    out = np.flatnonzero((px[:, 2] <= 0) | (px[:, 3] <= 0) | (px[:, 0] >= w) | (px[:, 1] >= h))
    if len(out):
        _fail(path, f"box {_which(out)} lies wholly outside the {w}x{h} image: it cannot mark a face; "
                    f"delete it or redraw it on the photo")
    clipped = B.clip(b)
    past = np.flatnonzero(np.abs(clipped - b).max(axis=1) > 1e-6)
    if len(past) and notes is not None:
        notes.append(f"{path}: box {_which(past)} reached past the edge of the {w}x{h} image and was clipped to it")
    return clipped.astype(np.float32)


def _which(idx) -> str:
    return ", ".join(str(int(i) + 1) for i in idx)


def _read_label_bytes(path) -> bytes:
    try:
        p = Path(path)
        if not p.is_file():  # a folder, or a link to /dev/zero or a pipe, which would read forever
            _fail(path, "not a regular file")
        if p.stat().st_size > MAX_LABEL_BYTES:
            _fail(path, f"{p.stat().st_size / 1e6:.0f} MB is over the {MAX_LABEL_BYTES // 1024**2} MB limit per label file")
        return p.read_bytes()
    except OSError as exc:
        _fail(path, f"cannot read the file ({exc.strerror or exc})")


def loads_labelme(data: bytes | str, path="labelme JSON"):
    """Decode labelme JSON bytes (UTF-8, with or without a BOM). Raises LabelFormatError, never
    RecursionError: one hostile label must cost only that label."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            _fail(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    else:
        data = data.lstrip("\ufeff")
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        _fail(path, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
    except RecursionError:
        _fail(path, "nested too deeply to be a labelme file")
    except ValueError as exc:  # e.g. a number of 5000 digits (Python's int conversion limit)
        _fail(path, f"invalid JSON ({str(exc)[:120]})")


def read_labelme(path, image_size: tuple[int, int] | None = None, notes: list[str] | None = None) -> ImageLabel:
    """Read a labelme JSON file (``imageData`` embedded or null). Raises LabelFormatError."""
    return parse_labelme(loads_labelme(_read_label_bytes(path), path), path, image_size, notes)


def parse_label_bytes(data: bytes, name: str, image_size: tuple[int, int] | None = None,
                      notes: list[str] | None = None) -> ImageLabel:
    """Parse label file contents by ``name``'s extension (.json labelme, .xml VOC). Raises LabelFormatError."""
    if len(data) > MAX_LABEL_BYTES:
        _fail(name, f"{len(data) / 1e6:.0f} MB is over the {MAX_LABEL_BYTES // 1024**2} MB limit per label file")
    ext = Path(str(name)).suffix.lower()
    if ext == ".xml":
        return parse_voc(data, name, notes)
    if ext == ".json":
        return parse_labelme(loads_labelme(data, name), name, image_size, notes)
    _fail(name, f"unsupported label type {ext!r} (use labelme .json or Pascal VOC .xml)")


def orient_label(label: ImageLabel, header, path="label") -> tuple[ImageLabel, str | None]:
    """Fit a label to its photo as shown (``facecore.images.ImageHeader``): a label drawn on the stored
    pixels of an EXIF-rotated photo (its size is the stored one, sides swapped) gets its boxes turned
    the same way; a label made for a scaled copy of the photo (same shape within ``ASPECT_TOLERANCE``)
    is rescaled; one made for an image of another shape is refused (LabelFormatError naming ``path``).
    Returns the label and a note for people when it was turned, rescaled or is ambiguous."""
    shown, raw, o = (header.width, header.height), (header.raw_width, header.raw_height), header.orientation
    size = (label.width, label.height)
    if size == shown and (o == 1 or shown != raw):
        return ImageLabel(*shown, label.boxes, label.proposed_by), None
    if o != 1 and size == raw and shown != raw:
        b = label.boxes.astype(np.float64)
        x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
        # (x, y) stored -> (x', y') shown, for the EXIF orientations that swap the sides
        f = {5: lambda x, y: (y, x), 6: lambda x, y: (1 - y, x),
             7: lambda x, y: (1 - y, 1 - x), 8: lambda x, y: (y, 1 - x)}[o]
        ax, ay = f(x1, y1)
        bx, by = f(x2, y2)
        boxes = np.stack([ax, ay, bx, by], axis=1).astype(np.float32) if len(b) else B.EMPTY.copy()
        return ImageLabel(*shown, boxes), (f"label drawn on the stored {raw[0]}x{raw[1]} pixels of a photo that "
                                           f"EXIF turns to {shown[0]}x{shown[1]}: its boxes were turned with it")
    if size == shown:
        return ImageLabel(*shown, label.boxes), (f"the photo has EXIF orientation {o}; the label is taken as "
                                                 f"drawn on the photo as shown, upright")
    if abs(size[0] / size[1] - shown[0] / shown[1]) > ASPECT_TOLERANCE * shown[0] / shown[1]:
        raise LabelFormatError(f"{path}: label made for a {size[0]}x{size[1]} image, the photo is {shown[0]}x"
                               f"{shown[1]} (another shape): its boxes cannot be placed on it; redraw them, or use "
                               f"the label made for this photo")
    return ImageLabel(*shown, label.boxes), (f"label made for a {size[0]}x{size[1]} image, the photo is "
                                             f"{shown[0]}x{shown[1]}: its boxes were rescaled; check them")


def read_label_for(label_path, image_path, notes: list[str] | None = None) -> ImageLabel:
    """Read the label of the photo at ``image_path`` and fit it to the photo (``orient_label``): the one
    reader of datasets' labels for training, evaluation, splits and the CLI. Raises LabelFormatError
    (a broken label, a box that cannot be a face, a size of another shape than the photo); a photo that
    cannot be read leaves the label as it is (``Dataset.validate`` names the photo)."""
    label = read_label(label_path, notes=notes)
    try:
        header = read_image_header(image_path)
    except ImageReadError:
        return label
    label, note = orient_label(label, header, label_path)
    if note and notes is not None:
        notes.append(f"{label_path}: {note}")
    return label


def labelme_document(label: ImageLabel, image_filename: str, label_name: str = "face") -> dict:
    """A labelme 5 document for ``label``; ``imagePath`` points from ``labels/`` to ``../images/``.
    A box accepted unchanged from a detector's proposal gets ``"proposed_by": <detector>`` (labelme keeps
    keys it does not know)."""
    shapes = [
        {"label": label_name, "points": [[float(x1), float(y1)], [float(x2), float(y2)]],
         "group_id": None, "shape_type": "rectangle", "flags": {}}
        for x1, y1, x2, y2 in label.pixel_boxes().tolist()
    ]
    for shape, source in zip(shapes, label.proposed_by):
        if source:
            shape["proposed_by"] = source
    return {
        "version": LABELME_VERSION, "flags": {}, "shapes": shapes,
        "imagePath": f"../images/{image_filename}", "imageData": None,
        "imageHeight": int(label.height), "imageWidth": int(label.width),
    }


def write_labelme(path, label: ImageLabel, image_filename: str) -> Path:
    """Write ``label`` as labelme JSON atomically (an empty ``shapes`` list marks a no-face image)."""
    return atomic_write_text(path, json.dumps(labelme_document(label, image_filename), indent=2))


def read_voc(path) -> ImageLabel:
    """Read a labelImg / Pascal VOC XML file; every ``<object>`` is a face. Raises LabelFormatError."""
    return parse_voc(_read_label_bytes(path), path)


def parse_voc(data: bytes | str, path="VOC XML", notes: list[str] | None = None) -> ImageLabel:
    """Parse Pascal VOC XML text; ``path`` only names the source in error messages."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        _fail(path, f"invalid XML ({exc})")
    except (RecursionError, ValueError) as exc:
        _fail(path, f"not a Pascal VOC file ({type(exc).__name__})")
    if root.tag != "annotation":
        _fail(path, f"not a Pascal VOC file (root element is <{root.tag}>, expected <annotation>)")
    size = root.find("size")
    if size is None or size.findtext("width") is None or size.findtext("height") is None:
        _fail(path, "<size> with <width> and <height> is missing")
    w, h = _size(path, size.findtext("width"), size.findtext("height"), text_ok=True)
    px = []
    objects = root.findall("object")
    if len(objects) > MAX_SHAPES:
        _fail(path, f"{len(objects)} objects is over the limit of {MAX_SHAPES} per label")
    for i, obj in enumerate(objects):
        bb = obj.find("bndbox")
        if bb is None:
            _fail(path, f"object {i} has no <bndbox>")
        vals = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            if bb.findtext(tag) is None:
                _fail(path, f"object {i} <bndbox> lacks <{tag}>")
            vals.append(_num(path, bb.findtext(tag), tag, text_ok=True))
        px.append(vals)
    unique = list(dict.fromkeys(map(tuple, px)))  # a repeated <object> (a merge or copy slip) is one face
    if len(unique) < len(px) and notes is not None:
        notes.append(f"{path}: {len(px) - len(unique)} <object>(s) repeat an earlier one's box exactly; kept once")
    px = [list(v) for v in unique]
    boxes = B.from_pixels(np.asarray(px, np.float32), w, h) if px else B.EMPTY.copy()
    return ImageLabel(w, h, _sane_boxes(path, boxes, w, h, notes))


def voc_document(label: ImageLabel, image_filename: str, label_name: str = "face") -> str:
    """A Pascal VOC XML string for ``label`` (pixel corners rounded to integers)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = image_filename
    size = ET.SubElement(root, "size")
    for tag, v in (("width", label.width), ("height", label.height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(int(v))
    for x1, y1, x2, y2 in np.rint(label.pixel_boxes()).astype(int).tolist():
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = label_name
        ET.SubElement(obj, "difficult").text = "0"
        bb = ET.SubElement(obj, "bndbox")
        for tag, v in (("xmin", x1), ("ymin", y1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bb, tag).text = str(v)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def write_voc(path, label: ImageLabel, image_filename: str) -> Path:
    """Write ``label`` as Pascal VOC XML atomically."""
    return atomic_write_text(path, voc_document(label, image_filename))


def read_label(path, image_size: tuple[int, int] | None = None, notes: list[str] | None = None) -> ImageLabel:
    """Read a ``.json`` (labelme) or ``.xml`` (VOC) label file. Raises LabelFormatError (never a
    RecursionError or OSError: a broken label costs only that label)."""
    ext = Path(path).suffix.lower()
    if ext not in LABEL_EXTS:
        _fail(path, f"unsupported label type {ext!r} (use labelme .json or Pascal VOC .xml)")
    return parse_label_bytes(_read_label_bytes(path), path, image_size, notes)


def write_label(path, label: ImageLabel, image_filename: str) -> Path:
    """Write in the format chosen by ``path``'s extension (.json labelme, .xml VOC)."""
    if Path(path).suffix.lower() == ".xml":
        return write_voc(path, label, image_filename)
    return write_labelme(path, label, image_filename)
