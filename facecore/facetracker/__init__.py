"""The tutorials' FaceTracker: backbones (``backbones``), the network (``model``), its losses
(``losses``) and fast inference (``inference``)."""
