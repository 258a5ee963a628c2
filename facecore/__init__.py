"""facecore: all of FaceTrack Studio's logic (datasets, labels, augmentation, models, detection).

It never imports streamlit, so every function runs the same from a page, a CLI or a test.
"""

from .live.rtc import preload_srtp

# Before anything can import TensorFlow: aiortc's SRTP library must bind its own OpenSSL, or a
# process that loaded TensorFlow first segfaults when the webcam stream starts (see preload_srtp).
preload_srtp()

from .boxes import iou, iou_matrix  # noqa: E402
from .datasets.dataset import Counts, Dataset, Item  # noqa: E402
from .errors import DatasetError, FaceCoreError, ImageReadError, ImportRejected, LabelFormatError  # noqa: E402
from .datasets.labels import ImageLabel  # noqa: E402
from .registry import ModelInfo, list_models  # noqa: E402
from .datasets.splits import Split  # noqa: E402
from .datasets.workspace import Workspace  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "Counts", "Dataset", "DatasetError", "FaceCoreError", "ImageLabel", "ImageReadError", "ImportRejected",
    "Item", "LabelFormatError", "ModelInfo", "Split", "Workspace", "iou", "iou_matrix", "list_models",
]
