"""Training a face detector on a dataset and saving it to ``models/<name>/``; the one background job.

``train(dataset, TrainConfig, progress, out_dir, cancel)`` does the whole run:

1. split the dataset by source photo (``Dataset.split``); the training set is the train split, plus
   its offline-augmented copies when ``augmentation="offline"``;
2. read every image once and resize it with ``facecore.preprocess.resize_for_model`` (the same
   function inference uses); a sample's box is its largest face (one box per image, as in the tutorials);
3. train: "blazeface" (the default) fine-tunes MediaPipe's face detector (``facecore.blazeface.finetune``).
   The FaceTracker: when the backbone is frozen (pretrained weights) and nothing augments on the fly,
   the fast path computes each sample's pooled backbone features once and trains only the heads on
   them; otherwise ``fit`` runs through the whole network (on-the-fly augmentation, training from
   scratch, fine-tuning). Early stopping and best-epoch restore watch ``val_loss`` (``loss`` without a
   val split); the learning rate halves on a plateau;
4. evaluate in eval mode on the train, val and test splits (the train figure catches models that
   only work in training mode). A network trained from scratch gets its BatchNorm statistics
   recomputed for its current weights after every epoch, before validation: without that, its
   moving statistics trail the weights and it does much worse in eval mode than in training;
5. save ``model.keras``, ``model.tflite`` and ``meta.json`` atomically (see ``save_model``).

Modules: ``config`` (``TrainConfig`` and its per-model defaults; the backbones are ``facecore.facetracker.backbones``'), ``data``
(samples and tf.data), ``callbacks``, ``context`` (what a run's stages share, progress, ETA),
``facetracker`` (the FaceTracker's stages), ``run`` (``train``), ``save`` (``save_model``), ``job``
(the background job). TensorFlow is imported only when training starts, so the command line and pages
load quickly.
"""

from .config import AUGMENTATION_MODES, INPUT_SHAPES, MAX_HEAD_UNITS, MAX_INPUT_SIZE, PERSONALIZE, TRAIN_LAYERS, TrainConfig, TrainingError, model_defaults
from .context import training_eta
from .data import Samples, load_samples, primary_box, read_splits
from .job import JOB, TrainRun, failure_kind, start_training
from .run import train
from .save import save_model

__all__ = [
    "AUGMENTATION_MODES", "INPUT_SHAPES", "JOB", "MAX_HEAD_UNITS", "MAX_INPUT_SIZE", "PERSONALIZE", "Samples", "TRAIN_LAYERS", "TrainConfig",
    "TrainRun", "TrainingError", "failure_kind", "load_samples", "model_defaults", "primary_box",
    "read_splits", "save_model", "start_training", "train", "training_eta",
]
