"""Model repository: version discovery, the versions and the registry of loaded models."""

from ._discovery import scan_versions as scan_versions
from ._pipelines import Pipeline as Pipeline
from ._pipelines import PipelineDefinition as PipelineDefinition
from ._pipelines import PipelineRegistry as PipelineRegistry
from ._pipelines import run_pipeline as run_pipeline
from ._registry import Model as Model
from ._registry import ModelRegistry as ModelRegistry
from ._version import ModelState as ModelState
from ._version import ModelVersion as ModelVersion
from ._version import VersionStatistics as VersionStatistics

__all__ = [
    "Model",
    "ModelRegistry",
    "ModelState",
    "ModelVersion",
    "Pipeline",
    "PipelineDefinition",
    "PipelineRegistry",
    "VersionStatistics",
    "run_pipeline",
    "scan_versions",
]
