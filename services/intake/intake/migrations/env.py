from leadpact.messaging import MESSAGING
from leadpact.migrations import run_env

from intake.store import Base

run_env([Base.metadata, MESSAGING])
