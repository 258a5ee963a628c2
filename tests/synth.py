"""Kept for test modules still importing ``synth`` (being edited elsewhere): the generator lives in
``facecore.testing``."""

from facecore.testing import face_image, make_dataset  # noqa: F401
