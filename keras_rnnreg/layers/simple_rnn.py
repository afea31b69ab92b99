"""Fused fully-connected RNN, weight-compatible with ``keras.layers.SimpleRNN``."""

from keras_rnnreg._api import serializable
from keras_rnnreg.layers.base import FusedRNN


@serializable
class SimpleRNN(FusedRNN):
    """Fully-connected RNN: ``h_t = f(x_t W + h_{t-1} U + b)``.

    This is the plain RNN of both papers (noise study Eqs. 1-2, hidden part; the SRNNs of the
    norm-stabilizer paper, Sec. 2.1). Same arguments, weight names and shapes as
    ``keras.layers.SimpleRNN`` (``kernel`` (F, units), ``recurrent_kernel`` (units, units),
    ``bias`` (units,)), so ``set_weights`` moves weights both ways. Beyond Keras:

    * ``activation="relu"`` (IRNN with ``recurrent_initializer="identity"``) or ``"trec"`` (the
      zero-bias thresholded ReLU of Konda et al.; the layer then has no bias);
    * ``perturbations=[...]``: weight noise / DropConnect (:mod:`keras_rnnreg.perturbations`),
      active in training only;
    * ``state_regularizer=``: a penalty on the hidden-state sequence or a list of them
      (:mod:`keras_rnnreg.regularizers`), each added with ``add_loss`` after the loop;
    * ``zoneout=z`` (Krueger et al. 2016; :class:`~keras_rnnreg.layers.base.FusedRNN`).

    Masks, ``zero_output_for_mask`` and ``stateful`` as Keras (:class:`FusedRNN`). Like Keras'
    SimpleRNN it takes no ``implementation`` and has no ``use_cudnn`` (``"auto"`` and ``False``
    are accepted, for configurations saved before, and mean our loop; ``True`` raises).
    """

    _keras_implementation_arg = False
    _kind = "simple_rnn"
    _keras_use_cudnn_arg = False

    _no_cudnn_reason = (
        "SimpleRNN has no cuDNN path (our fused loop is faster than Keras' SimpleRNN; "
        "docs/benchmarks.md)"
    )

    def _backward_activations(self):
        return (self.activation_name,)


__all__ = ["SimpleRNN"]
