"""Exceptions raised by facecore.

Every message is meant to be shown to a user as is (pages call ``st.error(str(exc))``):
it names the file or setting at fault and says what to do about it.
"""


class FaceCoreError(Exception):
    """Base class: a problem the user can act on."""


class ImageReadError(FaceCoreError):
    """An image file is missing, corrupt or not an image."""


class LabelFormatError(FaceCoreError):
    """A label file (labelme JSON or Pascal VOC XML) is malformed."""


class DatasetError(FaceCoreError):
    """A dataset folder is missing, empty or inconsistent."""


class ImportRejected(DatasetError):
    """An upload or archive was refused (unsafe paths, too large, wrong type)."""
