"""The live dashboard: a snapshot of the cold-path figures, served with server-sent events."""
from flowchain.web.background import DashboardThread
from flowchain.web.server import DashboardServer
from flowchain.web.state import DashboardState

__all__ = ["DashboardServer", "DashboardState", "DashboardThread"]
