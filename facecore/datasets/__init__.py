"""Datasets on disk: folders (``dataset``), label files (``labels``), the Collect & Label logic
(``labeling``, ``prelabel``), content addresses (``contents``), splits, archives, checks and the workspace."""
