"""Atrous (dilated) 3x3 convolution, stride 1, SAME padding.

TEMPORARY SKELETON: the public interface only. The fast implementation lands with
the kernels issue; until then `atrous_conv2d` is the reference.
"""
import keras
import tensorflow as tf


def reference_atrous_conv2d(x, kernel, rate):
    """Plain dilated convolution: `tf.nn.atrous_conv2d(x, kernel, rate, "SAME")`.

    Args:
      x: float tensor [B, H, W, Cin].
      kernel: float tensor [KH, KW, Cin, Cout], same dtype as x.
      rate: Python int >= 1, the dilation rate.
    Returns:
      Tensor [B, H, W, Cout] of x's dtype.
    """
    return tf.nn.atrous_conv2d(x, kernel, rate, padding="SAME")


def atrous_conv2d(x, kernel, rate):
    """Fast dilated convolution; equals `reference_atrous_conv2d`."""
    return reference_atrous_conv2d(x, kernel, rate)


@keras.saving.register_keras_serializable(package="kernels")
class AtrousConv2D(keras.layers.Layer):
    """Keras layer computing `atrous_conv2d`, with `keras.layers.Conv2D` weight shapes.

    Weights: `kernel` [KH, KW, Cin, filters] and optional `bias` [filters], so
    `set_weights(conv2d.get_weights())` works both ways.
    """

    def __init__(self, filters, kernel_size, dilation_rate=1, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.kernel_size = tuple(int(k) for k in ks)
        rate = dilation_rate if isinstance(dilation_rate, int) else dilation_rate[0]
        self.dilation_rate = int(rate)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)

    def build(self, input_shape):
        cin = int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel", shape=self.kernel_size + (cin, self.filters),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.filters,), initializer=self.bias_initializer,
                regularizer=self.bias_regularizer)

    def call(self, x):
        y = atrous_conv2d(x, self.kernel, self.dilation_rate)
        if self.bias is not None:
            y = y + self.bias
        return y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters, kernel_size=self.kernel_size,
            dilation_rate=self.dilation_rate, use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(self.bias_regularizer))
        return config
