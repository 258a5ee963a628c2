"""Exceptions raised by facecore.

Every message is meant to be shown to a user as is (pages call ``st.error(str(exc))``):
it names the file or setting at fault and says what to do about it.
"""


class FaceCoreError(Exception):
    """Base class: a problem the user can act on."""


class ImageReadError(FaceCoreError):
    """An image file is missing, corrupt or not an image."""


class DamagedImageError(ImageReadError):
    """An image file is recognisably a JPEG or PNG but its data is damaged or cut short (bad
    checksum, corrupt compressed data, premature end): decoders would show garbage or a part."""


class LabelFormatError(FaceCoreError):
    """A label file (labelme JSON or Pascal VOC XML) is malformed."""


class DatasetError(FaceCoreError):
    """A dataset folder is missing, empty or inconsistent."""


class ImportRejected(DatasetError):
    """An upload or archive was refused (unsafe paths, too large, wrong type)."""


class StorageError(FaceCoreError, OSError):
    """A file could not be written or read for a reason outside facecore: read-only folder, full
    disk, name too long, no permission. Also an ``OSError``, so older ``except OSError`` still holds."""


class ModelFileError(FaceCoreError):
    """A saved model (folder, ``meta.json``, ``.tflite`` or ``.keras`` file) is unusable, or a model
    name points outside the models folder."""


class BusyError(FaceCoreError):
    """Another process holds the lock for this job (e.g. an augmentation of the same dataset)."""


class Cancelled(FaceCoreError):
    """The user stopped the work (``facecore.jobs.Cancel``). ``partial`` describes what was finished
    before it stopped and kept (a report or a result of the work so far), or is None when nothing was
    saved: work that saves all or nothing (a model, a video) leaves the previous files as they were."""

    def __init__(self, message: str, partial=None):
        super().__init__(message)
        self.partial = partial
