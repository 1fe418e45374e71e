"""The study notes' claims, measured with our own modules (``visiontasks benchmark claims``).

Each claim is one function registered with :func:`claim`: its docstring states the claim, says what
it measures (``Measures:``) and cites the notes (``Notes: seeds/FILE:LINE``); it returns its table and
a verdict (AGREES / DISAGREES / MIXED). Counting claims (parameters, multiply-adds, receptive fields)
are exact and instant; training claims (``_train.training_claim``) are real seeded SGD runs on a
generated shapes set (``_shapes``, ``_train``) and also return loss curves, drawn into a PNG per claim. :data:`NOT_YET_MEASURED` lists the others.
"""

# registers the claims, in the notes' order (kernels, AlexNet, VGG, GoogLeNet, NiN, ResNet, MobileNet, fields, FCN)
from . import kernels, alexnet, vgg, googlenet, nin, resnet, mobilenet, stages, fcn  # noqa: F401, I001
# the training claims (real SGD runs on the synthetic shapes set)
from . import plain_residual, batch_norm, activations, dropout, lrn, momentum, fcn_skips  # noqa: F401, I001
# the detector ladder (timed, random weights)
from . import detector_ladder  # noqa: F401, I001
from ._registry import CLAIMS, Claim, ClaimResult, claim, list_claims, verdict_of
from .pending import NOT_YET_MEASURED

__all__ = ["CLAIMS", "Claim", "ClaimResult", "NOT_YET_MEASURED", "claim", "list_claims", "verdict_of"]
