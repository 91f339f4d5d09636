from leadpact.messaging import MESSAGING
from leadpact.migrations import run_env
from sla_monitor.store import Base

run_env([Base.metadata, MESSAGING])
