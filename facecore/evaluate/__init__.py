"""Measuring detectors on labeled photos: the best face per photo (``metrics``), every face
(``every_face``), precision-recall and AP (``ap``), and where the labels came from (``provenance``)."""
