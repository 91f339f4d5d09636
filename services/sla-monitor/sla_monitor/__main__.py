from leadpact.service import serve
from sla_monitor.app import SERVICE

serve(SERVICE)
