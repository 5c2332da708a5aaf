"""Semantic segmentation research stack: data, models, training and evaluation.

Subpackages: `research.data` (VOC layout, embedded dataset, tf.data pipeline),
`research.models` (DeepLab v3, U-Net), and the modules `research.train`,
`research.evaluate`, `research.predict`. Fast numerical kernels live in the
separate top-level package `kernels`.
"""
