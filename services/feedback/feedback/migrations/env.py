from feedback.store import Base
from leadpact.messaging import MESSAGING
from leadpact.migrations import run_env

run_env([Base.metadata, MESSAGING])
