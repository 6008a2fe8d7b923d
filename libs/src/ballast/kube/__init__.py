"""Kubernetes support: the tool binaries `make tools` builds and a local control plane run from them."""

from ballast.kube.controlplane import ControlPlane, ControlPlaneError, ControlPlaneState
from ballast.kube.tools import ToolsMissing, tool, tools_bin_dir

__all__ = ["ControlPlane", "ControlPlaneError", "ControlPlaneState", "ToolsMissing", "tool", "tools_bin_dir"]
