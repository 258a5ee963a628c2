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

from . import boxes as B
from .errors import LabelFormatError
from .io import atomic_write_text

LABEL_EXTS = (".json", ".xml")
LABELME_VERSION = "5.0.1"


@dataclass(frozen=True)
class ImageLabel:
    """Face boxes of one image. ``boxes``: float32 (N, 4) normalized ``[x1, y1, x2, y2]``."""

    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: B.EMPTY.copy())

    def __post_init__(self):
        object.__setattr__(self, "boxes", B.order_corners(self.boxes))

    @property
    def has_face(self) -> bool:
        return len(self.boxes) > 0

    def pixel_boxes(self) -> np.ndarray:
        """Boxes in pixels, float32 (N, 4)."""
        return B.to_pixels(self.boxes, self.width, self.height)


def image_name(image_path: str) -> str:
    """File name from a labelme ``imagePath`` written on Windows (``..\\images\\a.jpg``) or POSIX."""
    return PureWindowsPath(image_path).name if "\\" in image_path else Path(image_path).name


def _fail(path, what: str):
    raise LabelFormatError(f"{path}: {what}")


def _num(path, value, what: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        _fail(path, f"{what} is not a number ({value!r})")
    if not np.isfinite(out):
        _fail(path, f"{what} is not finite ({value!r})")
    return out


def parse_labelme(data, path="labelme JSON", image_size: tuple[int, int] | None = None) -> ImageLabel:
    """Parse a decoded labelme document (dict). ``image_size`` (w, h) is used when the file lacks it.

    Rectangles (two corners, any order) and polygons (their bounding box) are faces;
    other shapes (points, lines) are ignored.
    """
    if not isinstance(data, dict):
        _fail(path, "not a labelme file (the top level must be a JSON object)")
    w, h = data.get("imageWidth"), data.get("imageHeight")
    if w is None or h is None:
        if image_size is None:
            _fail(path, "imageWidth/imageHeight missing and the image size is unknown")
        w, h = image_size
    w, h = int(_num(path, w, "imageWidth")), int(_num(path, h, "imageHeight"))
    if w <= 0 or h <= 0:
        _fail(path, f"image size must be positive, got {w}x{h}")
    shapes = data.get("shapes", [])
    if not isinstance(shapes, list):
        _fail(path, "'shapes' must be a list")
    px = []
    for i, shape in enumerate(shapes):
        if not isinstance(shape, dict):
            _fail(path, f"shape {i} is not an object")
        kind = shape.get("shape_type") or "rectangle"
        if kind not in ("rectangle", "polygon"):
            continue
        pts = shape.get("points")
        if not isinstance(pts, list) or len(pts) < 2 or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pts):
            _fail(path, f"shape {i} ({kind}) needs at least two [x, y] points, got {pts!r}")
        arr = np.array([[_num(path, v, f"shape {i} point") for v in p] for p in pts], np.float32)
        px.append([arr[:, 0].min(), arr[:, 1].min(), arr[:, 0].max(), arr[:, 1].max()])
    boxes = B.from_pixels(px, w, h) if px else B.EMPTY.copy()
    return ImageLabel(w, h, boxes)


def read_labelme(path, image_size: tuple[int, int] | None = None) -> ImageLabel:
    """Read a labelme JSON file (``imageData`` embedded or null). Raises LabelFormatError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(path, f"cannot read the file ({exc})")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(path, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
    return parse_labelme(data, path, image_size)


def labelme_document(label: ImageLabel, image_filename: str, label_name: str = "face") -> dict:
    """A labelme 5 document for ``label``; ``imagePath`` points from ``labels/`` to ``../images/``."""
    shapes = [
        {"label": label_name, "points": [[float(x1), float(y1)], [float(x2), float(y2)]],
         "group_id": None, "shape_type": "rectangle", "flags": {}}
        for x1, y1, x2, y2 in label.pixel_boxes().tolist()
    ]
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
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        _fail(path, f"cannot read the file ({exc})")
    return parse_voc(data, path)


def parse_voc(data: bytes | str, path="VOC XML") -> ImageLabel:
    """Parse Pascal VOC XML text; ``path`` only names the source in error messages."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        _fail(path, f"invalid XML ({exc})")
    if root.tag != "annotation":
        _fail(path, f"not a Pascal VOC file (root element is <{root.tag}>, expected <annotation>)")
    size = root.find("size")
    if size is None or size.findtext("width") is None or size.findtext("height") is None:
        _fail(path, "<size> with <width> and <height> is missing")
    w = int(_num(path, size.findtext("width"), "width"))
    h = int(_num(path, size.findtext("height"), "height"))
    if w <= 0 or h <= 0:
        _fail(path, f"image size must be positive, got {w}x{h}")
    px = []
    for i, obj in enumerate(root.findall("object")):
        bb = obj.find("bndbox")
        if bb is None:
            _fail(path, f"object {i} has no <bndbox>")
        vals = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            if bb.findtext(tag) is None:
                _fail(path, f"object {i} <bndbox> lacks <{tag}>")
            vals.append(_num(path, bb.findtext(tag), tag))
        px.append(vals)
    return ImageLabel(w, h, B.from_pixels(px, w, h) if px else B.EMPTY.copy())


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


def read_label(path, image_size: tuple[int, int] | None = None) -> ImageLabel:
    """Read a ``.json`` (labelme) or ``.xml`` (VOC) label file. Raises LabelFormatError."""
    ext = Path(path).suffix.lower()
    if ext == ".json":
        return read_labelme(path, image_size)
    if ext == ".xml":
        return read_voc(path)
    _fail(path, f"unsupported label type {ext!r} (use labelme .json or Pascal VOC .xml)")


def write_label(path, label: ImageLabel, image_filename: str) -> Path:
    """Write in the format chosen by ``path``'s extension (.json labelme, .xml VOC)."""
    if Path(path).suffix.lower() == ".xml":
        return write_voc(path, label, image_filename)
    return write_labelme(path, label, image_filename)
