"""Semantic segmentation research stack: data, models, training and evaluation.

Subpackages: `research.data` (VOC layout, embedded dataset, tf.data pipeline),
`research.models` (DeepLab v3 and v3+, U-Net), and the modules `research.train`,
`research.evaluate`, `research.predict`. Fast numerical kernels live in the
separate top-level package `kernels`.
"""
import os

from research import runtime

# TensorFlow reads these once, at import: set the project's defaults first (the user's
# own environment always wins). See research/runtime.py for why oneDNN is on.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
runtime.set_onednn_default()
