"""The "me / not me" recognizer: identity sets (``data``), training (``train``), comparing
classifiers (``compare``) and recognition on photos and frames (``recognize``)."""
