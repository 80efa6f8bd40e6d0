"""DAG pipelines as OVMS defines them: config entries, validation and plan, custom nodes
(C libraries through OVMS' interface) and ovtrio's Python nodes."""

from ._custom_node import CustomNode as CustomNode
from ._custom_node import CustomNodeLibrary as CustomNodeLibrary
from ._custom_node import NodeTensorInfo as NodeTensorInfo
from ._custom_node import Precision as Precision
from ._custom_node import initialize_node as initialize_node
from ._executor import RunModel as RunModel
from ._executor import execute as execute
from ._graph import CUSTOM as CUSTOM
from ._graph import DL_MODEL as DL_MODEL
from ._graph import PYTHON as PYTHON
from ._graph import REQUEST as REQUEST
from ._graph import RESPONSE as RESPONSE
from ._graph import LibraryConfig as LibraryConfig
from ._graph import NodeConfig as NodeConfig
from ._graph import NodeKind as NodeKind
from ._graph import NodeOutput as NodeOutput
from ._graph import PipelineConfig as PipelineConfig
from ._graph import Source as Source
from ._graph import parse_libraries as parse_libraries
from ._graph import parse_pipelines as parse_pipelines
from ._meta import NodeMeta as NodeMeta
from ._meta import TensorMeta as TensorMeta
from ._meta import check_inputs as check_inputs
from ._node import NodeStatistics as NodeStatistics
from ._node import ThreadedNode as ThreadedNode
from ._plan import CustomNodeLookup as CustomNodeLookup
from ._plan import Edge as Edge
from ._plan import ExecutionPlan as ExecutionPlan
from ._plan import ModelLookup as ModelLookup
from ._plan import Step as Step
from ._plan import validate as validate
from ._python_node import PythonNode as PythonNode
from ._python_node import load_python_node as load_python_node

__all__ = [
    "CUSTOM",
    "DL_MODEL",
    "PYTHON",
    "REQUEST",
    "RESPONSE",
    "CustomNode",
    "CustomNodeLibrary",
    "CustomNodeLookup",
    "Edge",
    "ExecutionPlan",
    "LibraryConfig",
    "ModelLookup",
    "NodeConfig",
    "NodeKind",
    "NodeMeta",
    "NodeOutput",
    "NodeStatistics",
    "NodeTensorInfo",
    "PipelineConfig",
    "Precision",
    "PythonNode",
    "RunModel",
    "Source",
    "Step",
    "TensorMeta",
    "ThreadedNode",
    "check_inputs",
    "execute",
    "initialize_node",
    "load_python_node",
    "parse_libraries",
    "parse_pipelines",
    "validate",
]
