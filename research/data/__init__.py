"""Data: the VOC layout and its checked readers (`voc`), the embedded synthetic dataset
(`synthetic`), the tf.data input pipeline (`pipeline`) and the dataset checker (`validate`).

Submodules are imported explicitly (``from research.data import voc``), so that the
numpy/PIL-only parts load without TensorFlow.
"""
