"""Data: the VOC layout and its checked readers (`voc`), a plain folder of your own images
and masks (`folder`), the one interface both go through (`datasets`), label checks
(`labels`), converters (`cityscapes`, `ade20k`, `sbd`, `folder_writer`), the embedded
synthetic dataset (`synthetic`), the tf.data input pipeline (`pipeline`) and the dataset
checker (`validate`).

Submodules are imported explicitly (``from research.data import voc``), so that the
numpy/PIL-only parts load without TensorFlow.
"""
