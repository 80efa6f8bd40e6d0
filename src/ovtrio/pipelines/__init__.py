"""DAG pipelines as OVMS defines them: custom node libraries and pipeline definitions."""

from ._custom_node import CustomNode as CustomNode
from ._custom_node import CustomNodeLibrary as CustomNodeLibrary
from ._custom_node import CustomNodeStatistics as CustomNodeStatistics
from ._custom_node import NodeTensorInfo as NodeTensorInfo
from ._custom_node import Precision as Precision

__all__ = [
    "CustomNode",
    "CustomNodeLibrary",
    "CustomNodeStatistics",
    "NodeTensorInfo",
    "Precision",
]
