"""deltaplane: 3D-aware audio-driven talking portraits from a short video, offline.

Heavy submodules (preprocessing backends, models) are imported lazily by `deltaplane.api`.
"""

__version__ = "0.1.0"
