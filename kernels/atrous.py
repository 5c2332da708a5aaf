"""Atrous (dilated) convolution, stride 1, SAME padding: the reference, then the fast version.

Why this file exists: on CPU, `keras.layers.Conv2D(dilation_rate=r)` goes through
space-to-batch (`tf.nn.convolution` does that for every dilated conv off TPU), which is
slow for large r (r=18 at [4, 24, 24, 2048] -> 256: 30 s forward + backward), and
`tf.nn.conv2d(dilations=r)` has no CPU gradient unless oneDNN is on.

The exact reformulation used here: a KH x KW convolution with dilation r is a sum of
KH*KW "taps". Tap (i, j) multiplies the input, shifted by (dy, dx) = (i*r - pad_top,
j*r - pad_left) and zero-filled, by the 1x1 kernel `kernel[i, j]` (a matmul over
channels). A tap only touches the window of the image where the shifted input overlaps
the output; a tap whose shift is as large as the image is all padding and is skipped
(at 24 x 24 with r >= 24 only the centre tap is left). The formulations differ only in
how the live taps are grouped into matmuls (see `_tap_groups`; `_taps_conv` gives all
three one exact hand-written gradient):

- "gemm": one matmul `x @ [Cin, T*Cout]` over the whole image for all T live taps,
  then the T output blocks are shifted and summed. Largest, most efficient matmul, but
  it computes every tap over the whole image.
- "rows": one matmul per kernel row, over only the input rows that row can reach.
- "taps": one matmul per live tap, over only its window: fewest FLOPs, most ops.
- "native": `tf.nn.conv2d(dilations=r)`: cuDNN on GPU, oneDNN on CPU when it is on,
  XLA's own convolution under jit_compile.
"""
import collections

import keras
import tensorflow as tf

from kernels.recompute import bn_relu_recomputed, training_batch_norm_source

IMPLEMENTATIONS = ("auto", "native", "gemm", "rows", "taps")


# ----------------------------------------------------------------------------------------
# Reference

def reference_atrous_conv2d(x, kernel, rate):
    """Plain dilated convolution: `tf.nn.atrous_conv2d(x, kernel, rate, "SAME")`.

    Args:
      x: float tensor [B, H, W, Cin].
      kernel: float tensor [KH, KW, Cin, Cout], same dtype as x.
      rate: Python int >= 1, the dilation rate.
    Returns:
      Tensor [B, H, W, Cout] of x's dtype:
      y[b, h, w, o] = sum_{i, j, c} x[b, h + i*rate - pt, w + j*rate - pl, c] * kernel[i, j, c, o]
      with pt = (KH-1)*rate // 2, pl = (KW-1)*rate // 2 and x zero outside the image.
    """
    return tf.nn.atrous_conv2d(x, kernel, rate, padding="SAME")


# ----------------------------------------------------------------------------------------
# Fast version: tap geometry

# The part of one spatial axis (length n) that a tap at offset d reads and writes:
# output positions [before, n - after) read input positions [start, start + length).
Window = collections.namedtuple("Window", "start length before after")


def _tap_offsets(kernel_size, rate):
    """Offsets (i*rate - pad_before) of the kernel's taps along one axis, SAME padding."""
    pad_before = (kernel_size - 1) * rate // 2
    return [i * rate - pad_before for i in range(kernel_size)]


def _window(n, d):
    """Window of a tap at offset d on an axis of length n (Python int or scalar tensor)."""
    if not tf.is_tensor(n):  # static size: dead taps are skipped, so length > 0 here
        return Window(max(d, 0), n - abs(d), max(-d, 0), max(d, 0))
    # Unknown size at trace time: clamp, so a tap that lies wholly in the padding gets
    # an empty window (its matmul is empty and costs nothing) instead of a bad slice.
    length = tf.maximum(n - abs(d), 0)
    before = tf.minimum(max(-d, 0), n)
    return Window(tf.minimum(max(d, 0), n), length, before, n - length - before)


def _is_live(d, n):
    """False only for a tap known (statically) to read nothing but padding."""
    return tf.is_tensor(n) or abs(d) < n


def _spatial_size(x):
    """(H, W) as Python ints where static, else as scalar int32 tensors."""
    dynamic = tf.shape(x)
    return tuple(x.shape[a] if x.shape[a] is not None else dynamic[a] for a in (1, 2))


def _crop(x, axis, window):
    """x restricted to window.start : window.start + window.length along axis 1 or 2."""
    begin = [0, 0, 0, 0]
    size = [-1, -1, -1, -1]
    begin[axis], size[axis] = window.start, window.length
    return tf.slice(x, begin, size)


def _matmul_channels(x, kernel):
    """[B, h, w, Cin] @ [Cin, N] -> [B, h, w, N] as one 2-D matmul (a 1x1 convolution)."""
    cin, n = kernel.shape
    y = tf.matmul(tf.reshape(x, [-1, cin]), kernel)
    return tf.reshape(y, tf.concat([tf.shape(x)[:-1], [n]], axis=0))


# ----------------------------------------------------------------------------------------
# Fast version: the formulations

def _pad(x, axis, before, after):
    """x zero-padded by (before, after) along axis 1 or 2."""
    paddings = [[0, 0], [0, 0], [0, 0], [0, 0]]
    paddings[axis] = [before, after]
    return tf.pad(x, paddings)


def _tap_groups(x, kernel_shape, rate, cut_rows, cut_cols):
    """(rows, cols, groups): the live taps' windows and their grouping into matmuls.

    rows[i] / cols[j]: the `Window` of kernel row i / column j (live ones only).
    groups[(gi, gj)]: the taps (i, j) sharing one matmul, over the input window they
    have in common: grouped by kernel row if cut_rows (gi = i, else None: the whole
    axis), by kernel column if cut_cols. So (False, False) is "gemm", (True, False)
    "rows", (True, True) "taps".
    """
    kh, kw = kernel_shape[:2]
    h, w = _spatial_size(x)
    rows = {i: _window(h, d) for i, d in enumerate(_tap_offsets(kh, rate)) if _is_live(d, h)}
    cols = {j: _window(w, d) for j, d in enumerate(_tap_offsets(kw, rate)) if _is_live(d, w)}
    groups = collections.defaultdict(list)
    for i in rows:
        for j in cols:
            groups[(i if cut_rows else None, j if cut_cols else None)].append((i, j))
    return rows, cols, groups


def _group_input(x, rows, cols, gi, gj):
    """The input window that group (gi, gj)'s matmul reads (x itself along an uncut axis)."""
    xg = x if gi is None else _crop(x, 1, rows[gi])
    return xg if gj is None else _crop(xg, 2, cols[gj])


def _group_kernel(kernel, members):
    """[Cin, T*Cout]: the 1x1 kernels of a group's T taps side by side."""
    return tf.concat([kernel[i, j] for i, j in members], axis=-1)


def _tap_sum(x, kernel, rows, cols, groups):
    """The sum of the live taps (forward ops only): [B, H, W, Cout] of x's dtype."""
    pieces = []
    for (gi, gj), members in groups.items():
        z = _matmul_channels(_group_input(x, rows, cols, gi, gj), _group_kernel(kernel, members))
        for zt, (i, j) in zip(tf.split(z, len(members), axis=-1), members):
            # Along an uncut axis, the tap's output window is its input window.
            zt = zt if gi is not None else _crop(zt, 1, rows[i])
            zt = zt if gj is not None else _crop(zt, 2, cols[j])
            pieces.append(tf.pad(zt, [[0, 0], [rows[i].before, rows[i].after],
                                      [cols[j].before, cols[j].after], [0, 0]]))
    if not pieces:  # every tap reads only padding (an even kernel at a rate beyond the image)
        return tf.zeros(tf.concat([tf.shape(x)[:-1], kernel.shape[-1:]], axis=0), x.dtype)
    return tf.add_n(pieces)


def _group_output_gradient(dy, rows, cols, gi, gj, members):
    """dz [B, h, w, T*Cout]: the adjoint of the group's "crop to each tap's window, pad,
    split" applied to dy (h, w: the group's input window)."""
    dz = []
    for i, j in members:  # adjoint of "crop to the tap's window, then pad"
        dzt = _crop(_crop(dy, 1, Window(rows[i].before, rows[i].length, 0, 0)), 2,
                    Window(cols[j].before, cols[j].length, 0, 0))
        dzt = dzt if gi is not None else _pad(dzt, 1, rows[i].start, rows[i].before)
        dzt = dzt if gj is not None else _pad(dzt, 2, cols[j].start, cols[j].before)
        dz.append(dzt)
    return tf.concat(dz, axis=-1)  # adjoint of the split


def _taps_conv(x, kernel, rate, cut_rows, cut_cols):
    """`_tap_sum` (exact; see the module docstring) with a hand-written exact gradient.

    Why not autodiff: it turns every slice of the forward pass into a full-size zero
    buffer with the slice written into it. `kernel[i, j]` alone gave each tap a
    StridedSliceGrad of the whole [KH, KW, Cin, Cout] kernel (15.5% of a DeepLab v3 train
    step's op time on vm-Intel-R-Xeon-R-Processor-2cpu, by TensorFlow's profiler through
    `scripts/profile_train.py`). The gradient here is the adjoint of
    each forward op, built from forward ops: a crop's adjoint is a pad, a pad's is a
    crop, the channel split's is a concat; per group dx_g = dz @ K_g^T and
    dK_g = x_g^T @ dz, and the kernel gradient is assembled once.

    Memory: each group's term of dx is a full-size [B, H, W, Cin] buffer once padded
    (Cin = 2048 in DeepLab's ASPP: 9 such terms summed at the end would be the largest
    transient of the train step). Each group's backward waits for the running sum of the
    groups before it (a control dependency), so one term is alive at a time. The
    backward crops its input windows from x again rather than keeping the forward's
    crops until then (x itself is kept anyway: the other branches reading it need it),
    and builds its own kernel slices; built under that dependency, they cannot be merged
    with the forward's by the graph optimizer. Measured effect on the DeepLab v3 train
    step: scripts/memory_breakdown.py.
    """
    kh, kw, cin, cout = kernel.shape
    rows, cols, groups = _tap_groups(x, kernel.shape, rate, cut_rows, cut_cols)

    @tf.custom_gradient
    def conv(x, kernel):
        def grad(dy):
            dx, dk = None, {}
            for (gi, gj), members in groups.items():
                with tf.control_dependencies([dy if dx is None else dx]):
                    dz = _group_output_gradient(dy, rows, cols, gi, gj, members)
                    xg = _group_input(x, rows, cols, gi, gj)
                    dxg = tf.matmul(tf.reshape(dz, [-1, len(members) * cout]),
                                    _group_kernel(kernel, members), transpose_b=True)
                    dxg = tf.reshape(dxg, tf.shape(xg))
                dxg = dxg if gi is None else _pad(dxg, 1, rows[gi].start, rows[gi].before)
                dxg = dxg if gj is None else _pad(dxg, 2, cols[gj].start, cols[gj].before)
                dx = dxg if dx is None else dx + dxg
                dkg = tf.matmul(tf.reshape(xg, [-1, cin]),
                                tf.reshape(dz, [-1, len(members) * cout]), transpose_a=True)
                dk.update(zip(members, tf.split(dkg, len(members), axis=-1)))
            zero = tf.zeros([cin, cout], kernel.dtype)  # taps wholly in the padding
            dkernel = tf.stack([tf.stack([dk.get((i, j), zero) for j in range(kw)]) for i in range(kh)])
            return (tf.zeros_like(x) if dx is None else dx), dkernel

        return _tap_sum(x, kernel, rows, cols, groups), grad

    return conv(tf.convert_to_tensor(x), tf.convert_to_tensor(kernel))


def _native_conv(x, kernel, rate):
    """`tf.nn.conv2d(dilations=rate)`; on CPU its gradient needs oneDNN (or XLA) if rate > 1."""
    return tf.nn.conv2d(x, kernel, strides=1, padding="SAME", dilations=rate)


def _live_fraction(kernel_size, rate, h, w):
    """Share of the full KH*KW*H*W tap work that "taps" computes (None if H or W unknown)."""
    if tf.is_tensor(h) or tf.is_tensor(w):
        return None
    rows = sum(max(h - abs(d), 0) for d in _tap_offsets(kernel_size[0], rate))
    cols = sum(max(w - abs(d), 0) for d in _tap_offsets(kernel_size[1], rate))
    return rows * cols / (kernel_size[0] * kernel_size[1] * h * w)


def _on_gpu(x):
    """Whether x's op runs on a GPU: its device if placed, else whether any GPU is visible."""
    if x.device:
        return "GPU" in x.device.upper()
    return bool(tf.config.list_logical_devices("GPU"))


def _choose(x, kernel, rate):
    """The "auto" rule: a formulation name, decided at trace time from Python-level facts.

    Measured (scripts/atrous_rule_table.py) forward + backward at [4, 24, 24, 2048] ->
    256, 3x3, seconds of CPU time with one intra-op thread (two threads scale all
    formulations alike, within ~10%), on vm-AMD-EPYC-2cpu (Zen 3, AVX2, no AVX-512), a
    heavily shared machine then (load ~10 on 2 cores: CPU time is the stable measure
    there, but treat the numbers as +-15%):

        rate                      2     6     12    18
        live fraction f         .89   .69   .44   .25   (share of tap work "taps" does)
        oneDNN off  rows        0.95  0.82  0.70  0.56
                    taps        1.04  0.88  0.55  0.34
        oneDNN on   native      1.10  0.98  0.72  0.61
                    rows        0.81  0.73  0.63  0.43
                    taps        1.14  0.95  0.62  0.35
        XLA, oneDNN off native  1.10  1.10  1.08  1.02
                    rows        1.03  0.92  0.77  0.61
                    taps        1.28  1.01  0.70  0.39
        XLA, oneDNN on  native  1.06  1.12  1.11  1.13
                    rows        1.02  0.90  0.77  0.58
                    taps        1.20  0.89  0.50  0.31

    Hence: rate 1 (or a 1x1 kernel) is an ordinary convolution: "native". On GPU,
    "native" (cuDNN runs dilation itself; not measured here). On CPU, "taps" (fewest
    FLOPs, nine small matmuls) wins once the live fraction f is small, "rows" (three
    larger matmuls) above it; the crossover lies between f = .44 and .69 in every
    setting measured (a tie at .69 under XLA with oneDNN), so one threshold, 0.6, for
    oneDNN on and off, with and without XLA. oneDNN's own dilated convolution
    ("native"), and XLA's, lose to "rows" at every rate here: they get no rule. With H
    or W unknown at trace time f is unknown: "taps", whose windows still shrink at run
    time.

    On vm-Intel-R-Xeon-R-Processor-2cpu (AVX-512 VNNI; a quiet machine), the same
    script (`--formulations native rows taps`):

        rate                      2     6     12    18
        oneDNN off  rows        0.49  0.42  0.36  0.28
                    taps        0.48  0.37  0.26  0.15
        oneDNN on   native      0.37  0.31  0.30  0.25
                    rows        0.33  0.29  0.24  0.18
                    taps        0.40  0.32  0.21  0.12
        XLA, oneDNN off native  0.39  0.38  0.38  0.39
                    rows        0.40  0.36  0.29  0.22
                    taps        0.48  0.39  0.27  0.15
        XLA, oneDNN on  native  0.38  0.38  0.38  0.37
                    rows        0.38  0.35  0.28  0.21
                    taps        0.43  0.35  0.24  0.13

    The rule picks the fastest form (or one within 3%) in every setting the project runs
    on either CPU: oneDNN on (its default on both, research/runtime.py), with and
    without XLA. The one miss is oneDNN off without XLA on the Intel machine at rate 6
    (f = .69), where "taps" is 12% faster than the "rows" the rule picks: a setting the
    project only runs when a user turns oneDNN off, so it gets no rule of its own.
    """
    kh, kw = kernel.shape[:2]
    if rate == 1 or (kh == 1 and kw == 1) or _on_gpu(x):
        return "native"
    live = _live_fraction((kh, kw), rate, *_spatial_size(x))
    if live is None:
        return "taps"
    return "rows" if live >= 0.6 else "taps"


def atrous_conv2d(x, kernel, rate, implementation="auto"):
    """Fast dilated convolution, stride 1, SAME padding; equals `reference_atrous_conv2d`.

    Args:
      x: float tensor [B, H, W, Cin] (float32, float16 or bfloat16); B, H, W may be
        unknown at trace time.
      kernel: float tensor [KH, KW, Cin, Cout] of x's dtype (any KH, KW; 3x3 is the hot case).
      rate: Python int >= 1, the dilation rate.
      implementation: "auto" (choose per case, see `_choose`), or force one formulation:
        "native", "gemm", "rows" or "taps" (see the module docstring).
    Returns:
      Tensor [B, H, W, Cout] of x's dtype, the definition in `reference_atrous_conv2d`.
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    rate = int(rate)
    if implementation == "auto":
        implementation = _choose(x, kernel, rate)
    if implementation == "native":
        return _native_conv(x, kernel, rate)
    cut_rows, cut_cols = {"gemm": (False, False), "rows": (True, False), "taps": (True, True)}[implementation]
    return _taps_conv(x, kernel, rate, cut_rows, cut_cols)


# ----------------------------------------------------------------------------------------
# Keras layer

@keras.saving.register_keras_serializable(package="kernels")
class AtrousConv2D(keras.layers.Layer):
    """Keras layer computing `atrous_conv2d` (+ bias), with `keras.layers.Conv2D` weights.

    Same results as `keras.layers.Conv2D(filters, kernel_size, dilation_rate=rate,
    padding="same", use_bias=use_bias)`. Weights: `kernel` [KH, KW, Cin, filters] and
    optional `bias` [filters], so `set_weights(conv2d.get_weights())` works both ways.
    Under a mixed-precision policy the variables stay float32 and the computation runs
    in the compute dtype.

    Args:
      filters: number of output channels.
      kernel_size: int or (KH, KW).
      dilation_rate: int (or a pair of equal ints), the rate.
      use_bias: whether to add a bias.
      kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer: as in Conv2D.
      implementation: passed to `atrous_conv2d` ("auto" by default).
      recompute_input: when the input is ReLU(training-mode BatchNorm) that this layer
        alone reads, the backward makes it again from the BatchNorm's input instead of
        keeping it (`kernels.recompute`; needs use_bias). Otherwise no effect.

    Example:
      >>> layer = AtrousConv2D(256, 3, dilation_rate=12, name="aspp_r12")
      >>> y = layer(tf.zeros([2, 24, 24, 2048]))  # [2, 24, 24, 256]
    """

    def __init__(self, filters, kernel_size, dilation_rate=1, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, implementation="auto",
                 recompute_input=False, **kwargs):
        super().__init__(**kwargs)
        if recompute_input and not use_bias:
            raise ValueError(f"{self.name}: recompute_input needs use_bias")
        self.recompute_input = bool(recompute_input)
        self.filters = int(filters)
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.kernel_size = tuple(int(k) for k in ks)
        rates = (dilation_rate,) * 2 if isinstance(dilation_rate, int) else tuple(dilation_rate)
        if rates[0] != rates[1]:
            raise ValueError(f"dilation_rate must be the same on both axes, got {dilation_rate}")
        self.dilation_rate = int(rates[0])
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
        self.implementation = implementation
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)

    def build(self, input_shape):
        """Creates `kernel` [KH, KW, Cin, filters] and `bias` [filters] (float32 under
        mixed precision), named as Keras' Conv2D names them."""
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
        """x [B, H, W, Cin] in the compute dtype -> [B, H, W, filters], same dtype."""
        # Keras has already cast x to the compute dtype; cast the float32 variables too.
        kernel = tf.cast(self.kernel, x.dtype)
        if self.recompute_input:
            source = training_batch_norm_source(x)
            if source is not None:
                return bn_relu_recomputed(x, source, self._conv, [kernel, tf.cast(self.bias, x.dtype)])
        return self._conv(x, kernel, None if self.bias is None else tf.cast(self.bias, x.dtype))

    def _conv(self, x, kernel, bias):
        """atrous_conv2d(x, kernel) + bias (if not None), on tensors."""
        y = atrous_conv2d(x, kernel, self.dilation_rate, implementation=self.implementation)
        return y if bias is None else tf.nn.bias_add(y, bias)

    def compute_output_shape(self, input_shape):
        """[B, H, W, Cin] -> [B, H, W, filters] (stride 1, SAME padding)."""
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        """Conv2D's arguments this layer takes, plus `implementation`."""
        config = super().get_config()
        config.update(
            filters=self.filters, kernel_size=self.kernel_size,
            dilation_rate=self.dilation_rate, use_bias=self.use_bias,
            implementation=self.implementation, recompute_input=self.recompute_input,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(self.bias_regularizer))
        return config
