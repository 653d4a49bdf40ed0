"""The live dashboard: a snapshot of the cold-path figures, served with server-sent events."""
from flowchain.observe.web.background import DashboardThread
from flowchain.observe.web.server import DashboardServer
from flowchain.observe.web.state import DashboardState

__all__ = ["DashboardServer", "DashboardState", "DashboardThread"]
