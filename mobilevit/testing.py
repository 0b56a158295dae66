"""The testing API: the few internals that the test suite, the fuzz harnesses
and the benchmarks inspect, in one documented place instead of private
attributes.  Stable within a release; applications should not need it.

* :func:`graph` - the model's current C graph (``mobilevit._C.Graph``):
  ``run(x, tensor_ids, num_threads=0, profile=None, check_finite=False)``,
  ``plan_bytes(B, H, W)``, ``node_modes(B, H, W)``, ``get_/set_fusion``,
  ``get_/set_winograd``, ``get_/set_max_bytes``, ``release()``.  Node ``i``
  makes tensor ``i + 1``; tensor 0 is the input.
* :func:`node_tags` - the op family of each node (what ``profile()`` groups by).
* :func:`run_tensors` - any tensors of the graph by id, as NCHW arrays.
* ``MODE_*`` - how a plan runs a node (:meth:`Graph.node_modes`), and
  ``FUSE_MIN_BYTES``, the default fusion threshold.
* ``OPS`` / ``OP_FIELDS`` - the node ops the C graph knows and the named
  fields of each (the one node description, ``csrc/model/graph.h``).
"""
from typing import Sequence, Tuple

from . import _C

MODE_ALONE = _C.MODE_ALONE
MODE_FUSED_HEAD = _C.MODE_FUSED_HEAD
MODE_FUSED_INNER = _C.MODE_FUSED_INNER
MODE_FUSED_TAIL = _C.MODE_FUSED_TAIL
FUSE_MIN_BYTES = _C.FUSE_MIN_BYTES
OPS = dict(_C.OPS)
OP_FIELDS = dict(_C.OP_FIELDS)


def graph(model) -> "_C.Graph":
    """The C graph of the model's current network (built if needed)."""
    return model._ensure_net().graph


def node_tags(model) -> Tuple[str, ...]:
    """Op family of each graph node, e.g. ``"conv 1x1"``, ``"depthwise 3x3"``."""
    return model._ensure_net().tags


def run_tensors(model, x, tensor_ids: Sequence[int], num_threads: int = 0):
    """The graph tensors ``tensor_ids`` (NCHW) for the NCHW float32 batch ``x``."""
    return graph(model).run(x, tuple(tensor_ids), num_threads)


__all__ = ["graph", "node_tags", "run_tensors", "MODE_ALONE", "MODE_FUSED_HEAD", "MODE_FUSED_INNER",
           "MODE_FUSED_TAIL", "FUSE_MIN_BYTES", "OPS", "OP_FIELDS"]
