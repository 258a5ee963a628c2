"""MediaPipe's BlazeFace: the built-in detector (``builtin``), its Keras form (``network``, ``port``),
fine-tuning (``finetune``, ``losses``), saved fine-tuned models (``saved``) and box styles (``boxstyle``)."""
