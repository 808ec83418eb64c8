"""The deployable runtime: a gRPC cloud server and an edge client streaming spike packets."""

from .edge import EdgeClient, SampleResult
from .protocol import RuntimeFailure
from .server import Server

__all__ = ["EdgeClient", "RuntimeFailure", "SampleResult", "Server"]
