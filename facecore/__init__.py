"""facecore: all of FaceTrack Studio's logic (datasets, labels, augmentation, models, detection).

It never imports streamlit, so every function runs the same from a page, a CLI or a test.
"""

from .boxes import iou, iou_matrix
from .dataset import Counts, Dataset, Item, Split
from .errors import DatasetError, FaceCoreError, ImageReadError, ImportRejected, LabelFormatError
from .labels import ImageLabel
from .registry import ModelInfo, list_models
from .workspace import Workspace

__version__ = "0.1.0"
__all__ = [
    "Counts", "Dataset", "DatasetError", "FaceCoreError", "ImageLabel", "ImageReadError", "ImportRejected",
    "Item", "LabelFormatError", "ModelInfo", "Split", "Workspace", "iou", "iou_matrix", "list_models",
]
