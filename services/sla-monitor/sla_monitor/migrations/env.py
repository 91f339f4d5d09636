from leadpact.messaging import MESSAGING
from leadpact.migrations import run_env
from sla_monitor.notify import store as _notify_tables  # noqa: F401 - registers the tables
from sla_monitor.routing import store as _routing_tables  # noqa: F401 - registers the tables
from sla_monitor.store import Base

run_env([Base.metadata, MESSAGING])
