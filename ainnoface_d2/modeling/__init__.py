"""AInnoFace model: backbone, RFE, shared heads, losses and the meta-architecture.

Importing this package registers ``build_ainnoface_resnet_fpn_backbone`` in ``BACKBONE_REGISTRY``
and ``AInnoFace`` in ``META_ARCH_REGISTRY``.
"""

from .backbone import AInnoFaceFPN, build_ainnoface_resnet_fpn_backbone
from .head import AInnoFaceHead
from .losses import iou_loss
from .meta_arch import AInnoFace
from .rfe import RFE
from .tta import AInnoFaceWithTTA, TTACopy, box_voting, face_tta_copies

__all__ = [
    "AInnoFace",
    "AInnoFaceFPN",
    "AInnoFaceHead",
    "AInnoFaceWithTTA",
    "TTACopy",
    "box_voting",
    "face_tta_copies",
    "RFE",
    "build_ainnoface_resnet_fpn_backbone",
    "iou_loss",
]
